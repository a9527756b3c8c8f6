"""The live screen: one run's header, charts and log, with stop / kill."""
from __future__ import annotations

import signal
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from app import launch
from app.cells import STATUS_STYLE, peak_text
from app.follow import RunTail
from app.messages import RunClosed, RunsChanged
from app.screens.dialogs import ConfirmScreen
from app.widgets import ChartKeys, ChartView, LossChart, MemoryChart, RunChart, ThroughputChart, clock
from gigagpt.store.actions import running_pid
from gigagpt.store.files import RunError
from gigagpt.store.meta import printable

ENDED_BADLY = ("failed", "crashed", "not started", "damaged")
# While data streams in, chart redraws may use this share of one core; on a big terminal or a slow
# machine they come less often than the refresh. A key (view change) redraws at once.
CHART_CPU_SHARE = 0.025


class LiveScreen(ChartKeys, Screen):
    HELP = ("Loss: raw (gray, min/max per column), debiased EMA (cyan), validation (orange).\n"
            "s asks the trainer to checkpoint and stop (resumable: gigagpt resume RUN);\n"
            "k kills it at once: steps since the last checkpoint are lost.")
    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("k", "kill", "Kill"),
        *ChartKeys.VIEW_BINDINGS,
        Binding("q,escape", "back", "Back"),
        Binding("question_mark", "app.help", "Help"),
    ]

    def __init__(self, tail: RunTail):
        super().__init__()
        self.tail = tail
        self.view = ChartView()
        self.stop_requested = False
        self.charts_due = 0.0  # monotonic time of the next allowed redraw of streaming data
        self.charts_pending = False
        self.log_shown = (None, 0)  # (log_generation, log_seq) of the tail when the log was last written

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        yield Static(id="failure")
        with Horizontal(id="charts"):
            yield LossChart(self.tail, self.view, id="loss-chart")
            with Vertical(id="side-charts"):
                yield ThroughputChart(self.tail, self.view, id="throughput-chart")
                yield MemoryChart(self.tail, self.view, id="memory-chart")
        yield Log(id="log", max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log").border_title = "train.log"
        self.show({self.tail.key})

    def on_screen_resume(self) -> None:
        self.show({self.tail.key})

    def on_unmount(self) -> None:
        self.app.post_message(RunClosed(self.tail.key))

    def on_runs_changed(self, message: RunsChanged) -> None:
        self.show(message.changed)

    # -- drawing

    def show(self, changed: set[str]) -> None:
        status = self.app.status(self.tail.key)
        self.query_one("#run-header", Static).update(self.header(status))
        failure = self.tail.failure(status)
        self.query_one("#failure", Static).update(Text(f"✗ {status}: {failure}", style="bold red") if failure else "")
        self.set_class(status in ENDED_BADLY, "-ended-badly")
        if self.tail.key in changed:
            self.charts_pending = True
            self.append_log()
        if self.charts_pending and time.monotonic() >= self.charts_due:
            self.charts_changed()

    def charts_changed(self) -> None:
        charts = list(self.query(RunChart))
        cost = sum(chart.render_seconds for chart in charts)  # of the previous redraw
        for chart in charts:
            chart.render_seconds = 0.0
        self.charts_due = time.monotonic() + cost / CHART_CPU_SHARE
        self.charts_pending = False
        for chart in charts:
            chart.refresh()

    def append_log(self) -> None:
        log = self.query_one("#log", Log)
        with self.tail.lock:
            generation, seq, lines = self.tail.log_generation, self.tail.log_seq, list(self.tail.log_lines)
        shown_generation, shown_seq = self.log_shown
        new = seq - shown_seq
        if generation != shown_generation or new > len(lines):
            log.clear()
            new = len(lines)
        if new:
            log.write_lines(lines[-new:])
        self.log_shown = (generation, seq)

    def header(self, status: str) -> Text:
        tail = self.tail
        series = tail.series
        shown_status = "stopping" if self.stop_requested and status == "running" else status
        loss, lr, tok_s = series.last("loss"), series.last("lr"), series.last("tok_s")
        best = series.best_val()
        mfu = series.last("mfu")
        history = (f" · loading history {100 * tail.history_done / tail.history_end:.0f}%"
                   if tail.history_end else "")
        bad = f" · {series.bad_lines} bad lines skipped" if series.bad_lines else ""
        world = tail.field("world_size", 1)
        name = printable(tail.field("name", "")) or tail.label
        line1 = Text.assemble(
            (f" {shown_status} ", STATUS_STYLE.get(status, "") + " reverse"), " ",
            (name, "bold"), (f" ({tail.label})" if name != tail.label else "", "dim"),
            (f" in {printable(str(tail.dir.parent))}" if tail.key != tail.id else "", "dim"),
            f"  step {tail.step()}/{tail.field('max_steps', '?')}",
            f"  elapsed {clock(tail.elapsed_seconds(status))}",
            f"  ETA {clock(tail.eta_seconds()) if status == 'running' else '–'}",
            f"  {printable(tail.field('device', ''))}" + (f" x {world}" if world > 1 else ""),
            (history + bad, "yellow"))
        line2 = Text.assemble(
            f" lr {lr:.2e}" if lr is not None else " lr –",
            "  loss ", (f"{loss:.4f}" if loss is not None else "–", "bold"),
            "  best val ", (f"{best:.4f}" if best is not None else "–", "bold"),
            f"  {tok_s:,.0f} tok/s" if tok_s is not None else "",
            f"  MFU {100 * mfu:.1f}%{peak_text(series.events)}" if mfu is not None else "")
        header = Text("\n").join([line1, line2])
        header.no_wrap, header.overflow = True, "ellipsis"  # a narrow terminal cuts each line, never wraps
        return header

    # -- keys

    def view_changed(self) -> None:
        self.query_one("#run-header", Static).update(self.header(self.app.status(self.tail.key)))
        self.charts_changed()

    def running_pid(self, verb: str) -> int | None:
        """The live trainer's pid (store.actions.running_pid: the lock's holder on this host), or
        the pid of one this dashboard started that has not written meta.json yet; else a message."""
        pid = self.app.tracker.starting_pid(self.tail.key)
        if pid is not None:
            return pid
        try:
            return running_pid(self.tail.dir)
        except RunError as e:
            self.notify(f"cannot {verb}: {e}", severity="warning")
            return None

    def action_stop(self) -> None:
        pid = self.running_pid("stop")
        if pid is None:
            return
        try:
            launch.send(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        self.stop_requested = True
        self.notify("stop requested: the trainer checkpoints after this step, then exits")
        self.show(set())

    def action_kill(self) -> None:
        pid = self.running_pid("kill")
        if pid is None:
            return
        step = self.tail.step()
        ckpts = [e["step"] for e in self.tail.series.events if e.get("kind") == "checkpoint"]
        last = f"step {ckpts[-1]}" if ckpts else "none"

        def answered(yes: bool | None) -> None:
            if yes:
                try:
                    launch.send(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.notify(f"killed {self.tail.label} (pid {pid})", severity="warning")

        self.app.push_screen(ConfirmScreen(
            f"Kill {self.tail.label} (pid {pid}) with SIGKILL?\nIt is at step {step}; last checkpoint: {last}. "
            "Steps after it are lost.\n(s stops it gracefully instead.)"), answered)
