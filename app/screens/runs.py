"""The runs screen: every run under the runs roots, sorted, filtered, selected, and acted on.

Rows are keyed by the app's run key (the id in the runs root, the path in an extra root of the
settings file), so the same id in two roots is two rows."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from app import launch
from app.screens.dialogs import AskScreen, ConfirmScreen
from app.screens.home import STATUS_STYLE
from gigagpt import runs
from gigagpt.rundir import RunError

STATUS_STYLE = {**STATUS_STYLE, "damaged": "bold red"}
STATUS_FILTERS = ("all", *runs.STATUSES)
MAX_COMPARE = 8

# column key -> (header, the summary key it sorts by, its cell). Wide terminals show them all;
# narrow ones drop the ones in NARROW_HIDDEN (the detail line under the table still shows them).
COLUMNS = {
    "mark": (" ", None, None),
    "name": ("run", "name", lambda r: r["name"]),
    "root": ("root", "root", lambda r: Path(r["root"]).name),  # shown with more than one runs root
    "preset": ("preset", "preset", lambda r: r["preset"] or "–"),
    "status": ("status", "status", lambda r: Text(r["status"], style=STATUS_STYLE.get(r["status"], ""))),
    "step": ("step", "step", runs.fmt_step),
    "tokens": ("tokens", "tokens", lambda r: runs.human_count(r["tokens"])),
    "loss": ("loss", "loss", lambda r: runs.fmt_loss(r["loss"])),
    "val_loss": ("val", "val_loss", lambda r: runs.fmt_loss(r["val_loss"])),
    "best_val": ("best val", "best_val", lambda r: runs.fmt_loss(r["best_val"])),
    "tok_s": ("tok/s", "tok_s", lambda r: runs.human_count(r["tok_s"])),
    "device": ("device", "device", lambda r: r["device"] or "–"),
    "started": ("started", "started", lambda r: time.strftime("%m-%d %H:%M", time.localtime(r["started"]))
                if r["started"] else "–"),
    "duration": ("duration", "duration", lambda r: runs.fmt_duration(r["duration"])),
    "tags": ("tags", None, lambda r: ",".join(r["tags"])),
}
SORTABLE = [k for k, (_, key, _) in COLUMNS.items() if key]
NARROW_HIDDEN = ("device", "duration", "tags")
WIDE = 130  # terminal columns from which every column fits
NAME_WIDTH = 28


class RunsScreen(Screen):
    HELP = ("One row per run directory; damaged ones (unreadable meta.json, garbage lines,\n"
            "a corrupt checkpoint) say what is wrong in the line under the table.\n"
            "Actions apply to the selected runs (space), else to the run under the cursor.\n"
            "Resume asks for the new max steps (more than done, for a completed run).\n"
            "Rename and tags are refused while a run is running: its trainer owns meta.json.\n"
            "Click a column header to sort by it; click again to reverse.")
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("space", "toggle_select", "Select"),
        Binding("a", "select_all", "All/none", show=False),
        Binding("slash", "focus_filter", "Filter"),
        Binding("f", "status_filter", "Status filter", show=False),
        Binding("o", "sort(False)", "Sort by next column", show=False),
        Binding("O", "sort(True)", "Reverse sort", show=False),
        Binding("c", "compare", "Compare"),
        Binding("r", "resume", "Resume"),
        Binding("g", "sample", "Sample"),
        Binding("e", "export", "Export"),
        Binding("n", "rename", "Rename", show=False),
        Binding("t", "tags", "Tags", show=False),
        Binding("s", "stop", "Stop", show=False),
        Binding("k", "kill", "Kill", show=False),
        Binding("d", "delete", "Delete", show=False),
        Binding("q,escape", "back", "Back"),
        Binding("question_mark", "app.help", "Help"),
    ]

    def __init__(self):
        super().__init__()
        self.caches: dict[Path, runs.SummaryCache] = {}  # one per runs root
        self.rows: list[dict] = []  # every run, as last read
        self.shown: list[dict] = []  # after filter and sort, in table order
        self.selected: set[str] = set()
        self.status_filter = "all"
        self.sort_key, self.sort_reverse = "started", True
        self.columns: tuple[str, ...] = ()
        self.table_layout = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-bar"):
            yield Input(id="runs-filter", placeholder="/ filter: words in name, preset, device, tags", compact=True)
            yield Static(id="runs-state")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="run-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#runs-table").focus()
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_resize(self) -> None:
        if self.loaded:
            self.show()

    # -- reading

    def runs_changed(self, changed: set[str]) -> None:
        self.reload()  # every poll tick of the app: cheap, the summaries are cached

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-list")
    def reload(self) -> None:
        rows = runs.list_all(self.app.runs_roots, self.caches)
        for row in rows:
            row["key"] = self.app.run_key(Path(row["root"]), row["id"])
        self.app.call_from_thread(self.loaded_rows, rows)

    def loaded_rows(self, rows: list[dict]) -> None:
        self.rows, self.loaded = rows, True
        self.selected &= {r["key"] for r in rows}
        self.show()

    # -- the table

    def many_roots(self) -> bool:
        return len(self.app.runs_roots) > 1

    def visible_columns(self) -> tuple[str, ...]:
        columns = [k for k in COLUMNS if k != "root" or self.many_roots()]
        if self.size.width >= WIDE:
            return tuple(columns)
        return tuple(k for k in columns if k not in NARROW_HIDDEN)

    def sortable(self) -> list[str]:
        return [k for k in SORTABLE if k != "root" or self.many_roots()]

    def show(self) -> None:
        """Filter, sort and (re)fill the table, keeping the cursor on the same run."""
        table = self.query_one("#runs-table", DataTable)
        text = self.query_one("#runs-filter", Input).value
        statuses = () if self.status_filter == "all" else (self.status_filter,)
        shown = [r for r in self.rows if runs.matches(r, text, statuses)]
        shown = runs.sort_rows(shown, COLUMNS[self.sort_key][1], self.sort_reverse)
        current = self.current_id()
        columns = self.visible_columns()
        layout = (columns, self.sort_key, self.sort_reverse)  # headers carry the sort arrow
        rebuild = layout != self.table_layout
        if rebuild:
            table.clear(columns=True)
            for key in columns:
                table.add_column(self.header(key), key=key)
            self.columns, self.table_layout = columns, layout
        ids = [r["key"] for r in shown]
        if rebuild or ids != [r["key"] for r in self.shown] or table.row_count != len(ids):
            table.clear()
            for row in shown:
                table.add_row(*self.cells(row), key=row["key"])
        else:
            for row in shown:
                for key, value in zip(columns, self.cells(row)):
                    table.update_cell(row["key"], key, value)
        self.shown = shown
        if current in ids:
            table.move_cursor(row=ids.index(current))
        self.show_state()
        self.show_detail()

    def header(self, key: str) -> str:
        label = COLUMNS[key][0]
        if key == self.sort_key:
            label += " ▼" if self.sort_reverse else " ▲"
        return label

    def cells(self, row: dict) -> list:
        out = []
        for key in self.columns:
            if key == "mark":
                out.append(Text("✓", style="bold green") if row["key"] in self.selected else " ")
            elif key == "name":
                name = row["name"] if len(row["name"]) <= NAME_WIDTH else row["name"][:NAME_WIDTH - 1] + "…"
                out.append(Text(name, style="bold red" if row["problem"] else ""))
            else:
                out.append(COLUMNS[key][2](row))
        return out

    def show_state(self) -> None:
        n, total = len(self.shown), len(self.rows)
        parts = [f"{n} of {total} runs" if n != total else f"{total} runs"]
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        parts.append(f"status: {self.status_filter} (f) · sort (o) · ? keys")
        self.query_one("#runs-state", Static).update(" · ".join(parts))
        self.query_one("#runs-table").border_title = self.app.roots_title()

    def current(self) -> dict | None:
        table = self.query_one("#runs-table", DataTable)
        if 0 <= table.cursor_row < len(self.shown):
            return self.shown[table.cursor_row]
        return None

    def current_id(self) -> str | None:
        """The key of the run under the cursor."""
        row = self.current()
        return row["key"] if row else None

    def show_detail(self) -> None:
        row = self.current()
        detail = self.query_one("#run-detail", Static)
        if row is None:
            empty = not self.rows
            where = ", ".join(map(str, self.app.runs_roots))
            detail.update(f"no runs in {where} yet: launch one from the launch screen (q)"
                          if empty and self.loaded else "")
            return
        line1 = Text.assemble((row["id"], "bold"), f"  {row['preset'] or '–'} · {row['device'] or '–'}"
                              f" · started {runs.fmt_time(row['started'])} · {runs.fmt_duration(row['duration'])}"
                              f" · val {runs.fmt_loss(row['val_loss'])} · checkpoints {row['checkpoints']}",
                              f" · tags {', '.join(row['tags'])}" if row["tags"] else "",
                              f" · root {row['root']}" if self.many_roots() else "")
        trouble = runs.note(row)
        line2 = Text(trouble, style="bold red") if trouble else Text(row["path"], style="dim")
        detail.update(Text("\n").join([line1, line2]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key not in self.sortable():
            return
        self.sort_reverse = not self.sort_reverse if key == self.sort_key else key in ("started", "step", "tokens")
        self.sort_key = key
        self.show()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            self.show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#runs-table").focus()

    # -- keys: the view

    def action_back(self) -> None:
        if self.focused is self.query_one("#runs-filter"):
            self.query_one("#runs-table").focus()  # esc leaves the filter box first
            return
        self.app.pop_screen()

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter").focus()

    def action_status_filter(self) -> None:
        self.status_filter = STATUS_FILTERS[(STATUS_FILTERS.index(self.status_filter) + 1) % len(STATUS_FILTERS)]
        self.show()

    def action_sort(self, reverse_only: bool) -> None:
        if reverse_only:
            self.sort_reverse = not self.sort_reverse
        else:
            sortable = self.sortable()
            i = sortable.index(self.sort_key)
            self.sort_key = sortable[(i + 1) % len(sortable)]
            self.sort_reverse = self.sort_key in ("started", "step", "tokens")  # biggest first
        self.show()
        self.notify(f"sorted by {COLUMNS[self.sort_key][0]}, {'descending' if self.sort_reverse else 'ascending'}",
                    timeout=2)

    def action_toggle_select(self) -> None:
        row = self.current()
        if row is None:
            return
        self.selected ^= {row["key"]}
        self.show()
        table = self.query_one("#runs-table", DataTable)
        if table.cursor_row < len(self.shown) - 1:
            table.move_cursor(row=table.cursor_row + 1)  # space, space, space selects a stretch

    def action_select_all(self) -> None:
        shown = {r["key"] for r in self.shown}
        self.selected = set() if shown <= self.selected else self.selected | shown
        self.show()

    # -- keys: actions

    def targets(self) -> list[dict]:
        """The selected runs (in table order), or the run under the cursor."""
        chosen = [r for r in self.shown if r["key"] in self.selected]
        if chosen:
            return chosen
        row = self.current()
        return [row] if row else []

    def one_target(self, verb: str) -> dict | None:
        row = self.current()
        if row is None:
            self.notify(f"no run to {verb}", severity="warning")
        return row

    def action_open(self) -> None:
        row = self.one_target("open")
        if row:
            self.app.open_run(row["key"])

    def action_compare(self) -> None:
        chosen = [r for r in self.shown if r["key"] in self.selected]
        if not 2 <= len(chosen) <= MAX_COMPARE:
            self.notify(f"select 2 to {MAX_COMPARE} runs with space to compare ({len(chosen)} selected)",
                        severity="warning")
            return
        from app.screens.compare import CompareScreen

        names = [r["name"] for r in chosen]
        names = [n if names.count(n) == 1 else f"{n} ({Path(r['root']).name})" for n, r in zip(names, chosen)]
        self.app.push_screen(CompareScreen([Path(r["path"]) for r in chosen], names))

    def action_resume(self) -> None:
        row = self.one_target("resume")
        if row is None:
            return
        if row["status"] in ("running", "damaged"):
            self.notify(f"cannot resume {row['id']}: it is {row['status']}", severity="warning")
            return
        if not row["checkpoints"] or row["checkpoint_problem"]:
            self.notify(f"cannot resume {row['id']}: {row['checkpoint_problem'] or 'it has no checkpoint'}",
                        severity="warning")
            return
        done, target = row["step"] or 0, row["max_steps"] or 0
        must_exceed = done if row["status"] == "completed" else 0

        def check(text: str) -> int:
            try:
                steps = int(text.strip().replace("_", "").replace(",", ""))
            except ValueError:
                raise ValueError(f"{text.strip()!r}: not a whole number") from None
            if steps <= max(must_exceed, 0):
                raise ValueError(f"must be more than {must_exceed}" if must_exceed else "must be > 0")
            return steps

        def answered(steps: int | None) -> None:
            if steps is None:
                return
            try:
                launch.resume(Path(row["path"]), steps)
            except OSError as e:
                self.notify(f"cannot resume {row['id']}: {e}", severity="error")
                return
            self.notify(f"resuming {row['id']} from step {row['last_checkpoint']} to {steps}")
            self.app.open_run(row["key"])

        default = 2 * target if row["status"] == "completed" else target
        self.app.push_screen(AskScreen(
            f"Resume {row['name']}", f"{row['status']} at step {done} of {target}, last checkpoint at step "
            f"{row['last_checkpoint']}. Train up to step:", str(default or ""), check), answered)

    def action_sample(self) -> None:
        row = self.one_target("sample from")
        if row is None:
            return
        if not row["checkpoints"] or row["checkpoint_problem"]:
            self.notify(f"cannot sample from {row['id']}: {row['checkpoint_problem'] or 'it has no checkpoint yet'}",
                        severity="warning")
            return
        from app.screens.sample import SampleScreen

        self.app.push_screen(SampleScreen(Path(row["path"]), row["name"]))

    def action_export(self) -> None:
        chosen = self.targets()
        if not chosen:
            self.notify("no run to export", severity="warning")
            return
        stem = chosen[0]["id"] if len(chosen) == 1 else f"gigagpt-{len(chosen)}-runs"
        default = str(Path.cwd() / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.csv")

        def check(text: str) -> Path:
            path = Path(text.strip()).expanduser()
            if not text.strip():
                raise ValueError("give a path")
            if path.suffix != ".csv" and path.exists() and not path.is_dir():
                raise ValueError(f"{path}: exists and is not a directory")
            if not path.parent.is_dir():
                raise ValueError(f"{path.parent}: no such directory")
            return path

        self.app.push_screen(AskScreen(
            f"Export {len(chosen)} run(s)", "A path ending in .csv writes a CSV file (run,step,kind,metric,value);\n"
            "any other path is a directory of TensorBoard event files, one per run.", default, check),
            lambda path: path and self.export([Path(r["path"]) for r in chosen], path))

    @work(thread=True, exit_on_error=False, group="export")
    def export(self, dirs: list[Path], path: Path) -> None:
        try:
            if path.suffix == ".csv":
                with open(path, "w", newline="", encoding="utf-8") as f:
                    n = runs.export_csv(dirs, f)
                message = f"wrote {n:,} rows to {path}"
            else:
                runs.export_tensorboard(dirs, path)
                message = f"wrote TensorBoard event files of {len(dirs)} run(s) under {path}"
        except (RunError, OSError) as e:
            self.app.call_from_thread(self.notify, f"export failed: {e}", severity="error")
            return
        self.app.call_from_thread(self.notify, message)

    def action_rename(self) -> None:
        row = self.one_target("rename")
        if row is None:
            return

        def answered(name: str | None) -> None:
            if name is not None:
                self.edit_meta(row, lambda d: runs.rename(d, name), f"renamed {row['id']}")

        self.app.push_screen(AskScreen(f"Rename {row['id']}", "Display name (the directory keeps its id):",
                                       row["name"], self.check_name), answered)

    @staticmethod
    def check_name(text: str) -> str:
        if not text.strip() or len(text.strip()) > runs.NAME_MAX:
            raise ValueError(f"must be 1-{runs.NAME_MAX} characters")
        return text.strip()

    def action_tags(self) -> None:
        row = self.one_target("tag")
        if row is None:
            return

        def check(text: str) -> list[str]:
            try:
                return runs.check_tags(text.replace(",", " ").split())
            except RunError as e:
                raise ValueError(str(e)) from None

        def answered(tags: list[str] | None) -> None:
            if tags is not None:
                self.edit_meta(row, lambda d: runs.set_tags(d, replace=tags), f"tags of {row['id']} set")

        self.app.push_screen(AskScreen(f"Tags of {row['name']}", "Tags, separated by spaces:",
                                       " ".join(row["tags"]), check, placeholder="e.g. baseline lr-sweep"), answered)

    def edit_meta(self, row: dict, edit, message: str) -> None:
        try:
            edit(Path(row["path"]))
        except (RunError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self.notify(message)
        self.reload()

    def running_target(self, verb: str) -> tuple[dict, int] | None:
        """The run under the cursor and its live trainer's pid, or None (said why)."""
        row = self.one_target(verb)
        if row is None:
            return None
        try:
            return row, runs.running_pid(Path(row["path"]))
        except (RunError, OSError) as e:
            self.notify(f"cannot {verb}: {e}", severity="warning")
            return None

    def action_stop(self) -> None:
        target = self.running_target("stop")
        if target is None:
            return
        row, pid = target
        launch.send(pid, signal.SIGTERM)
        self.notify(f"stop requested: {row['id']} checkpoints after this step, then exits")

    def action_kill(self) -> None:
        target = self.running_target("kill")
        if target is None:
            return
        row, pid = target

        def answered(yes: bool | None) -> None:
            if yes:
                launch.send(pid, signal.SIGKILL)
                self.notify(f"killed {row['id']} (pid {pid})", severity="warning")

        self.app.push_screen(ConfirmScreen(
            f"Kill {row['id']} (pid {pid}) with SIGKILL?\nSteps since its last checkpoint (step "
            f"{row['last_checkpoint']}) are lost. (s stops it gracefully instead.)"), answered)

    def action_delete(self) -> None:
        chosen = self.targets()
        if not chosen:
            self.notify("no run to delete", severity="warning")
            return
        running = [r["id"] for r in chosen if r["status"] == "running"]
        if running:
            self.notify(f"not deleting: {', '.join(running)} running; stop it first", severity="error")
            return
        names = ", ".join(r["id"] for r in chosen[:5]) + (f" and {len(chosen) - 5} more" if len(chosen) > 5 else "")

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            failed = []
            for row in chosen:
                try:
                    runs.delete(Path(row["path"]))
                except (RunError, OSError) as e:
                    failed.append(f"{row['id']}: {e}")
            self.selected -= {r["key"] for r in chosen}
            if failed:
                self.notify("not deleted: " + "; ".join(failed), severity="error")
            else:
                self.notify(f"deleted {len(chosen)} run(s)")
            self.reload()

        self.app.push_screen(ConfirmScreen(
            f"Delete {len(chosen)} run(s): {names}?\nTheir metrics, logs and checkpoints are removed for good."),
            answered)
