"""The sample modal: text from a run's latest checkpoint, by `gigagpt sample` in a subprocess."""
from __future__ import annotations

import codecs
import itertools
import os
import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from app import launch

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# field id -> (label, default, how to read it, what is allowed)
FIELDS = {
    "temperature": ("temperature", "0.8", float, lambda v: v > 0, "a number > 0"),
    "top-k": ("top-k", "200", int, lambda v: v >= 1, "an integer >= 1"),
    "max-new-tokens": ("new tokens", "200", int, lambda v: 1 <= v <= 100_000, "an integer from 1 to 100000"),
    # the seed makes a sample repeatable (`gigagpt sample RUN --seed N`); it moves on after each one
    "seed": ("seed", "1337", int, lambda v: 0 <= v < 2**63, "an integer >= 0"),
}


class SampleScreen(ModalScreen):
    """Prompt, temperature, top-k, length; ctrl+r (or enter) generates, esc cancels a generation
    in progress (it kills the subprocess) or closes."""

    BINDINGS = [Binding("ctrl+r", "generate", "Generate", priority=True),
                Binding("escape", "cancel", "Cancel / close")]

    def __init__(self, run_dir: Path, title: str):
        super().__init__()
        self.run_dir, self.title_text = Path(run_dir), title
        self.proc = None
        self.started = 0.0
        self.text = ""  # what the sampler has printed so far
        self.seed = 0  # the seed of the sample in hand
        self.spin = itertools.cycle(SPINNER)

    def compose(self) -> ComposeResult:
        with Vertical(id="sample", classes="dialog"):
            with Horizontal(classes="field"):
                yield Label("prompt", classes="field-label")
                yield Input(id="s-prompt", placeholder="text to continue (empty: a new document)", compact=True)
            with Horizontal(id="sample-knobs"):
                for key, (label, default, *_rest) in FIELDS.items():
                    yield Label(label, classes="knob-label")
                    yield Input(default, id=f"s-{key}", compact=True, classes="knob")
                yield Button("Generate ^r", id="generate", variant="primary", compact=True)
            yield Static(id="sample-status")
            with VerticalScroll(id="sample-output-box"):
                yield Static(id="sample-output")
            yield Static("[dim]ctrl+r / enter: generate · esc: cancel, then close[/dim]")

    def on_mount(self) -> None:
        self.query_one("#sample").border_title = Text(f"Sample from {self.title_text}")  # a name, not markup
        self.query_one("#s-prompt").focus()
        self.set_interval(0.2, self.tick)

    def values(self) -> dict:
        out = {}
        for key, (label, _default, parse, ok, allowed) in FIELDS.items():
            text = self.query_one(f"#s-{key}", Input).value.strip()
            try:
                value = parse(text)
            except ValueError:
                value = None
            if value is None or not ok(value):
                raise ValueError(f"{label} = {text!r}: must be {allowed}")
            out[key.replace("-", "_")] = value
        return out

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_generate()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "generate":
            self.action_generate()

    def action_generate(self) -> None:
        if self.proc is not None:
            self.notify("already generating; esc cancels", severity="warning")
            return
        status = self.query_one("#sample-status", Static)
        try:
            values = self.values()
        except ValueError as e:
            status.update(Text(str(e), style="bold red"))
            return
        self.query_one("#sample-output", Static).update("")
        self.text = ""
        self.seed = values["seed"]
        self.started = time.monotonic()
        self.proc = launch.start_sample(self.run_dir, self.query_one("#s-prompt", Input).value, **values)
        self.follow(self.proc)

    @work(thread=True, exit_on_error=False, group="sample")
    def follow(self, proc) -> None:
        """Passes the text on as `gigagpt sample` prints it, token by token."""
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while chunk := os.read(proc.stdout.fileno(), 1 << 16):  # what is there, not waiting for more
                self.app.call_from_thread(self.add_text, proc, utf8.decode(chunk))
            proc.wait()
            proc.stderr.seek(0)
            err = proc.stderr.read().decode("utf-8", "replace")
        finally:
            proc.stdout.close()
            proc.stderr.close()
            launch.forget(proc)
        self.app.call_from_thread(self.finished, proc, utf8.decode(b"", final=True), err)

    def add_text(self, proc, text: str) -> None:
        if proc is not self.proc or not text:
            return  # cancelled meanwhile
        self.text += text
        self.query_one("#sample-output", Static).update(Text(self.text))
        self.query_one("#sample-output-box", VerticalScroll).scroll_end(animate=False)

    def finished(self, proc, rest: str, err: str) -> None:
        if proc is not self.proc:
            return  # cancelled meanwhile
        self.add_text(proc, rest)
        self.proc = None
        seconds = time.monotonic() - self.started
        status = self.query_one("#sample-status", Static)
        if proc.returncode == 0:
            status.update(Text(f"done in {seconds:.1f} s (seed {self.seed}; the next one gets a new seed)",
                               style="green"))
            self.query_one("#s-seed", Input).value = str(self.seed + 1)
            self.query_one("#sample-output", Static).update(Text(self.text.rstrip()))
        else:
            # The CLI's one-line error, not a traceback: `gigagpt: error: ...` is its last line.
            lines = [line for line in err.strip().splitlines() if line.strip()]
            reason = next((line for line in reversed(lines) if line.startswith("gigagpt: error:")), None)
            reason = reason or (lines[-1] if lines else f"exit status {proc.returncode}")
            status.update(Text(f"sampling failed: {reason.removeprefix('gigagpt: error: ')}", style="bold red"))

    def tick(self) -> None:
        if self.proc is not None:
            seconds = time.monotonic() - self.started
            doing = (f"generating: {len(self.text)} characters" if self.text
                     else "gigagpt sample: loading torch and the checkpoint")
            self.query_one("#sample-status", Static).update(Text(
                f"{next(self.spin)} {doing}… {seconds:.0f} s (esc cancels)", style="yellow"))

    def action_cancel(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            launch.cancel(proc)
            self.query_one("#sample-status", Static).update(Text("cancelled", style="yellow"))
            return
        self.dismiss(None)

    def on_unmount(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None  # text still on its way is dropped
            launch.cancel(proc)
