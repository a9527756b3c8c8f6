"""Modal screens: the `?` key help, a yes/no question and a one-line question."""
from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Static


def describe_key(key: str) -> str:
    names = {"question_mark": "?", "plus": "+", "minus": "-", "escape": "esc", "enter": "enter",
             "space": "space", "slash": "/", "equals_sign": "=", "left_square_bracket": "[",
             "right_square_bracket": "]"}
    return ", ".join(names.get(k, k.replace("ctrl+", "^")) for k in key.split(","))


class HelpScreen(ModalScreen):
    """Every key of the screen below (and the app's), with what it does."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, screen: Screen):
        super().__init__()
        self.below = screen

    def compose(self) -> ComposeResult:
        keys = [(describe_key(b.key), b.description) for b in [*self.below.BINDINGS, *self.app.BINDINGS]
                if isinstance(b, Binding) and b.description]
        width = max((len(key) for key, _ in keys), default=0)
        rows = []
        for key, what in keys:  # the keys right-aligned to the widest (`[, shift+up` is 11)
            key = f"{key:>{width}}".replace("[", "\\[")  # `[` is a key too, not markup
            rows.append(f"[b]{key}[/b]  {what}")
        # The notes are hand-wrapped: a line that does not end a sentence runs on, and the box wraps to its width.
        notes = re.sub(r"(?<![.\n])\n(?!\n)", " ", getattr(self.below, "HELP", ""))
        with Vertical(id="help"):
            yield Static("\n".join(rows) + (f"\n\n{notes}" if notes else ""), id="help-text")
            yield Static("[dim]esc or ? closes[/dim]")

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Keys"


class ConfirmScreen(ModalScreen[bool]):
    """A question answered with y / n (or the buttons); dismisses with True for yes. The
    question is plain text (it quotes run names), never markup."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(Text(self.question))
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error", compact=True)
                yield Button("No (n)", id="no", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AskScreen(ModalScreen):
    """One line of text asked for (a name, tags, a step count, a path). Enter answers; esc
    cancels (dismisses with None). `check` turns the text into the answer or raises ValueError
    with a message shown under the box, so a bad answer is refused in place. Title and question
    are plain text (they quote run names), never markup."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, question: str, value: str = "", check=None, placeholder: str = ""):
        super().__init__()
        self.title_text, self.question, self.value = title, question, value
        self.check = check or (lambda text: text)
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="ask", classes="dialog"):
            yield Static(Text(self.question))
            yield Input(self.value, id="ask-input", placeholder=self.placeholder)
            yield Static(id="ask-error")
            yield Static("[dim]enter: ok · esc: cancel[/dim]")

    def on_mount(self) -> None:
        self.query_one("#ask").border_title = Text(self.title_text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            answer = self.check(event.value)
        except ValueError as e:
            self.query_one("#ask-error", Static).update(Text(str(e), style="bold red"))
            return
        self.dismiss(answer)

    def action_cancel(self) -> None:
        self.dismiss(None)
