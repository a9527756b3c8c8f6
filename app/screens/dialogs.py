"""Modal screens: the `?` key help and a yes/no question."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Static


def describe_key(key: str) -> str:
    names = {"question_mark": "?", "plus": "+", "minus": "-", "escape": "esc", "enter": "enter"}
    return ", ".join(names.get(k, k.replace("ctrl+", "^")) for k in key.split(","))


class HelpScreen(ModalScreen):
    """Every key of the screen below (and the app's), with what it does."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, screen: Screen):
        super().__init__()
        self.below = screen

    def compose(self) -> ComposeResult:
        rows = []
        for binding in [*self.below.BINDINGS, *self.app.BINDINGS]:
            if isinstance(binding, Binding) and binding.description:
                rows.append(f"[b]{describe_key(binding.key):>9}[/b]  {binding.description}")
        notes = getattr(self.below, "HELP", "")
        with Vertical(id="help"):
            yield Static("\n".join(rows) + (f"\n\n{notes}" if notes else ""), id="help-text")
            yield Static("[dim]esc or ? closes[/dim]")

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Keys"


class ConfirmScreen(ModalScreen[bool]):
    """A question answered with y / n (or the buttons); dismisses with True for yes."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.question)
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error", compact=True)
                yield Button("No (n)", id="no", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
