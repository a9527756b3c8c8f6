"""The messages screens and the app exchange (Textual messages, not method calls across screens).

Screens post OpenRun / RunClosed / BrowseRuns / RefreshRuns; they bubble up to the app. The app posts
RunsChanged and DevicesChanged to its screens (bubble=False: a screen without a handler drops them).
"""
from __future__ import annotations

from textual.message import Message


class OpenRun(Message):
    """Show a run's live screen: its key, its path, its id or a name one run has."""

    def __init__(self, run: str):
        super().__init__()
        self.run = run


class RunClosed(Message):
    """A run's live screen went away: the app may stop reading the run (unless it is running)."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key


class BrowseRuns(Message):
    """Show the runs screen."""


class RefreshRuns(Message):
    """Read the runs roots again now (after a rename, a delete, a launch), not at the next tick."""


class RunsChanged(Message, bubble=False):
    """The app read the runs roots: `changed` holds the keys of followed runs with new data."""

    def __init__(self, changed: set[str]):
        super().__init__()
        self.changed = changed


class DevicesChanged(Message, bubble=False):
    """The device probe finished: app.devices holds what it found."""
