"""The sweep form (ctrl+s on the launch screen): one config key and its values, optionally a second
key and its values; every combination of the launch form's run is queued by `gigagpt sweep`.
Checked by the core's own rules before anything is queued (app/queue.py check_sweep); a problem
is shown in the form, and nothing is queued. Dismisses with the CLI's line once queued."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from app import queue
from app.launch import Preset
from gigagpt.config import ConfigError

FIELDS = (("key1", "key", "train.lr"), ("values1", "values", "1e-3,3e-4,1e-4"),
          ("key2", "2nd key", "optional, e.g. train.batch_size"), ("values2", "values", "optional, e.g. 8,16"),
          ("sweep-name", "name", ""))


class SweepForm(ModalScreen):
    DEFAULT_CSS = """
    SweepForm { align: center middle; }
    #sweep-form { width: 72; max-width: 98%; }
    #sweep-form .field { margin-top: 0; }
    #sweep-form .field-label { width: 9; }
    #sweep-error { height: auto; min-height: 1; }
    """
    BINDINGS = [Binding("ctrl+s", "submit", "Queue the sweep", priority=True),
                Binding("escape", "cancel", "Cancel")]

    def __init__(self, preset: Preset, overrides: list[str], name: str, root: Path, key: str = "train.lr"):
        super().__init__()
        self.preset, self.overrides, self.run_name, self.root = preset, list(overrides), name, Path(root)
        self.first_key = key
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="sweep-form", classes="dialog"):
            yield Static(Text(f"Queue one run of {self.preset.name} (the launch form's values) for every "
                              "combination of these values:"))
            for field_id, label, hint in FIELDS:
                value = {"key1": self.first_key, "sweep-name": self.run_name}.get(field_id, "")
                yield Horizontal(Label(label, classes="field-label"),
                                 Input(value, id=field_id, compact=True, placeholder=hint), classes="field")
            yield Static(id="sweep-error")
            yield Static("[dim]enter or ctrl+s: queue · esc: cancel · values: comma-separated[/dim]")

    def on_mount(self) -> None:
        self.query_one("#sweep-form").border_title = "Sweep"
        self.query_one("#values1", Input).focus()

    def value(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value.strip()

    def grid(self) -> list[str]:
        """The form as `gigagpt sweep` --grid texts; ConfigError for a half-filled pair."""
        out = []
        for n in ("1", "2"):
            key, values = self.value(f"key{n}"), self.value(f"values{n}")
            if n == "2" and not key and not values:
                continue
            if not key or not values:
                raise ConfigError(f"{'second ' if n == '2' else ''}sweep: give a config key and its values, "
                                  "e.g. train.lr and 1e-3,3e-4")
            out.append(f"{key}={values}")
        return out

    def show_error(self, message: str, field_id: str | None = None) -> None:
        for box in self.query(Input):
            box.remove_class("-invalid")
        if field_id:
            self.query_one(f"#{field_id}").add_class("-invalid")
        self.query_one("#sweep-error", Static).update(Text(message, style="bold red"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        if self.busy:
            return
        try:
            grid = self.grid()
        except ConfigError as e:
            self.refused(str(e))
            return
        self.busy = True
        self.show_error("")
        self.query_one("#sweep-error", Static).update(Text("checking every combination …", style="yellow"))
        self.queue_sweep(grid, queue.sweep_args(self.preset, self.overrides, grid, self.value("sweep-name"), self.root))

    @work(thread=True, exit_on_error=False, group="sweep")
    def queue_sweep(self, grid: list[str], args: list[str]) -> None:
        """Check every combination (a big grid takes a while: not on the UI thread), then queue it."""
        try:
            count = queue.check_sweep(self.preset, self.overrides, grid)
        except ConfigError as e:
            self.app.call_from_thread(self.refused, str(e))
            return
        self.app.call_from_thread(self.query_one("#sweep-error", Static).update,
                                  Text(f"queueing {count} runs …", style="yellow"))
        ok, said = queue.cli(args)
        self.app.call_from_thread(self.queued, ok, said)

    def refused(self, message: str) -> None:
        """A problem the checks found: shown in the form, its field marked; nothing was queued."""
        self.busy = False
        keys = [self.value("key1"), self.value("key2")]
        # mark the values of the key the core names; a key it does not know, the key itself
        named = next((i for i, k in enumerate(keys, 1) if k and k in message), 1)
        bad_key = "unknown key" in message or "expected section.key" in message
        self.show_error(message, f"{'key' if bad_key else 'values'}{named}")
        self.app.bell()

    def queued(self, ok: bool, said: str) -> None:
        self.busy = False
        if ok:
            self.dismiss(said)
        else:
            self.show_error(said)
            self.app.bell()

    def action_cancel(self) -> None:
        if not self.busy:
            self.dismiss(None)
