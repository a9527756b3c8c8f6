"""The queue's keys: on the launch screen, queue the form's run (ctrl+n) or a sweep of it (ctrl+s);
on the runs screen, move a queued run earlier or later ([ and ]), cancel queued runs (x) and show
a run's sweep (w). Each goes through the real CLI (`gigagpt queue add|move|cancel`, `gigagpt
sweep`, app/queue.py) in a worker thread; the queue runner itself is the app's (ctrl+g).

LaunchQueueKeys is mixed into HomeScreen (check_form, preset, nproc, #run-name, #form-error);
RunsQueueKeys into RunsScreen (one_target, targets, shown)."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.widgets import Input, Static

from app import queue
from app.messages import RefreshRuns
from app.screens.dialogs import ConfirmScreen
from app.screens.run_actions import label
from gigagpt.store.files import RunError
from gigagpt.store.meta import read_meta
from gigagpt.store.queue import runner_state


def offer_runner(screen) -> None:
    """After queueing: offer to start the runs root's queue runner when none holds it."""
    app = screen.app
    if runner_state(app.runs_root) is not None:
        return
    app.push_screen(ConfirmScreen(
        f"No queue runner is running for {app.runs_root}.\n"
        "y: start one now (a detached process: it outlives the dashboard and starts the queued runs in turn)\n"
        "n: not now (ctrl+g starts it)"), lambda yes: yes and app.action_start_runner())


class LaunchQueueKeys:
    BINDINGS = [
        Binding("ctrl+n", "queue", "Queue", priority=True),
        Binding("ctrl+s", "sweep", "Sweep", priority=True),
    ]
    HELP = ("ctrl+n queues the form's run instead; ctrl+s queues a sweep of it (a config key\n"
            "and its values, optionally a second key: every combination). The queue runner\n"
            "(ctrl+g, a detached process) starts queued runs in turn; b shows them (queued #1, ...).")

    def form_for_queue(self) -> list[str] | None:
        """The form's --set list, checked as a launch checks it; None (and why, said) when it is not valid."""
        checked = self.check_form()
        error = self.query_one("#form-error", Static)
        if checked is not None and self.nproc > 1:
            error.update(Text(f"processes = {self.nproc}: a queued run is one process; launch it with ctrl+r",
                              style="bold red"))
            checked = None
        if checked is None:
            self.app.bell()
            self.notify("not queued: " + str(error.content), severity="error")
            return None
        return checked[1]

    def action_queue(self) -> None:
        overrides = self.form_for_queue()
        if overrides is None:
            return
        name = self.query_one("#run-name", Input).value.strip()
        self.query_one("#form-error", Static).update(Text("queueing …", style="yellow"))
        self.queue_add(queue.add_args(self.preset, overrides, name, self.app.runs_root))

    @work(thread=True, exit_on_error=False, group="queue")
    def queue_add(self, args: list[str]) -> None:
        ok, said = queue.cli(args)
        self.app.call_from_thread(self.queue_added, ok, said)

    def queue_added(self, ok: bool, said: str) -> None:
        error = self.query_one("#form-error", Static)
        if not ok:
            error.update(Text(said, style="bold red"))
            self.app.bell()
            return
        error.update("")
        self.queue_done(said)

    def queue_done(self, said: str | None) -> None:
        if not said:
            return
        self.notify(said.split("; ")[0])  # the rest is the CLI's hint to start a runner: offered here
        self.post_message(RefreshRuns())
        offer_runner(self)

    def action_sweep(self) -> None:
        overrides = self.form_for_queue()
        if overrides is None:
            return
        from app.screens.sweep_form import SweepForm

        name = self.query_one("#run-name", Input).value.strip() or self.preset.name
        self.app.push_screen(SweepForm(self.preset, overrides, name, self.app.runs_root), self.queue_done)


class RunsQueueKeys:
    BINDINGS = [
        Binding("left_square_bracket,shift+up", "queue_move(-1)", "Queued run: start earlier", show=False),
        Binding("right_square_bracket,shift+down", "queue_move(1)", "Queued run: start later", show=False),
        Binding("x", "queue_cancel", "Cancel queued runs", show=False),
        Binding("w", "sweep_view", "Sweep"),
        Binding("ctrl+g", "start_runner", "Start the queue runner", show=False),
    ]
    HELP = ("Queued runs start in the order of their number (queued #1 first); cancelled\n"
            "ones never start. w on a run of a sweep shows the sweep: its runs' curves and\n"
            "val losses against the swept values, the best run marked. Each runs root has\n"
            "its own queue and runner: ctrl+g starts the one of the root of the run under\n"
            "the cursor (the border below says each root's runner).")
    queue_busy = False

    def action_start_runner(self) -> None:
        row = self.current()
        self.app.action_start_runner(row["root"] if row else None)

    def action_queue_move(self, delta: int) -> None:
        row = self.one_target("move")
        if row is None:
            return
        if row["status"] != "queued" or not row.get("queue_position"):
            self.notify(f"{label(row)} is {row['status']}: only queued runs move", severity="warning")
            return
        position = row["queue_position"] + delta
        last = sum(r["status"] == "queued" and r["root"] == row["root"] for r in self.rows)
        if not 1 <= position <= last:
            self.notify(f"{label(row)} is {'first' if delta < 0 else 'last'} in the queue already", timeout=2)
            return
        if self.queue_busy:
            self.notify("one moment: the last change to the queue is still being made", timeout=2)
            return
        self.queue_busy = True
        self.run_queue_cli([queue.move_args(Path(row["path"]), position)], f"{label(row)}: queued #{position}")

    def action_queue_cancel(self) -> None:
        targets = self.targets()
        queued = [r for r in targets if r["status"] == "queued"]
        if not queued:
            what = f"{label(targets[0])} is {targets[0]['status']}" if len(targets) == 1 else "none of them is queued"
            self.notify(f"nothing to cancel: {what}", severity="warning")
            return
        names = ", ".join(label(r) for r in queued[:3]) + (f" and {len(queued) - 3} more" if len(queued) > 3 else "")
        by_root: dict[str, list[Path]] = {}
        for r in queued:
            by_root.setdefault(r["root"], []).append(Path(r["path"]))

        def answered(yes: bool) -> None:
            if yes:
                self.queue_busy = True
                self.run_queue_cli([queue.cancel_args(dirs) for dirs in by_root.values()],
                                   f"cancelled {len(queued)} queued run{'s' if len(queued) > 1 else ''}")

        self.app.push_screen(ConfirmScreen(f"Cancel {len(queued)} queued run{'s' if len(queued) > 1 else ''}: "
                                           f"{names}?\nThey stay in the list as cancelled and never start."),
                             answered)

    @work(thread=True, exit_on_error=False, group="queue")
    def run_queue_cli(self, commands: list[list[str]], done: str) -> None:
        failed = None
        try:
            for args in commands:
                ok, said = queue.cli(args)
                if not ok:
                    failed = said
                    break
        finally:
            self.queue_busy = False  # the next key may change the queue again
            self.post_message(RefreshRuns())
        self.app.call_from_thread(self.notify, failed or done, severity="error" if failed else "information")

    def action_sweep_view(self) -> None:
        row = self.one_target("show the sweep of")
        if row is None:
            return
        try:
            sweep = read_meta(Path(row["path"])).sweep
        except RunError as e:
            self.notify(str(e), severity="warning")
            return
        if not sweep:
            self.notify(f"{label(row)} is not a run of a sweep (ctrl+s on the launch screen queues one)",
                        severity="warning")
            return
        from app.screens.sweep import SweepScreen

        self.app.push_screen(SweepScreen(sweep["id"], Path(row["root"])))
