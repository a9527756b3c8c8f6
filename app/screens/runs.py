"""The runs screen: every run under the runs roots (the app's summaries from the run store),
sorted, filtered, selected, opened and compared; the other actions are in run_actions.py.

Rows are keyed by the app's run key (the id in the runs root, the path in an extra root of the
settings file), so the same id in two roots is two rows. Damaged runs are rows too: status
`damaged`, their problem in the line under the table."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from app.cells import (
    Columns,
    cell,
    current_step,
    duration,
    fit_columns,
    run_status_cell,
    set_columns,
    started,
    table_space,
    write_rows,
)
from app.messages import OpenRun, RunsChanged
from app.screens.queue_actions import RunsQueueKeys
from app.screens.run_actions import RunActions
from gigagpt.listing import (
    fmt_duration,
    fmt_loss,
    fmt_step,
    fmt_time,
    human_count,
    matches,
    never_started,
    note,
    sort_rows,
)
from gigagpt.store.layout import root_problem
from gigagpt.store.meta import printable
from gigagpt.store.summary import STATUSES

STATUS_FILTERS = ("all", *STATUSES)
MAX_COMPARE = 8
NAME_WIDTH = (20, 40)  # the names' column: cut to no fewer (cut in the middle) and no more characters

# column key -> (header, the summary key it sorts by, its cell). Wide terminals show them all; a
# narrow one shows REQUIRED, the sort column (cut in the middle when it is in CUT), then the others
# in OPTIONAL's order while they fit (at "name" the names widen; the detail line under the table
# shows the rest of the run). A small one (60 columns) may drop the sort column, the step's max.
COLUMNS = {
    "mark": (" ", None, None),
    "name": ("run", "name", None),  # the names shown, cut together (fit_all): never two alike
    "root": ("root", "root", lambda r: cell(Path(r["root"]).name)),  # shown with more than one runs root
    "preset": ("preset", "preset", lambda r: cell(r["preset"] or "–")),
    "status": ("status", "status", run_status_cell),  # queued #2
    "step": ("step", "step", lambda r: cell(fmt_step(r))),
    "tokens": ("tokens", "tokens", lambda r: cell(human_count(r["tokens"]))),
    "loss": ("loss", "loss", lambda r: cell(fmt_loss(r["loss"]))),
    "val_loss": ("val", "val_loss", lambda r: cell(fmt_loss(r["val_loss"]))),
    "best_val": ("best val", "best_val", lambda r: cell(fmt_loss(r["best_val"]))),
    "tok_s": ("tok/s", "tok_s", lambda r: cell(human_count(r["tok_s"]))),
    "device": ("device", "device", lambda r: cell(r["device"] or "–")),
    "started": ("started", "started", started),
    "duration": ("duration", "duration", duration),
    "tags": ("tags", None, lambda r: cell(",".join(r["tags"]))),
}
SORTABLE = [k for k, (_, key, _) in COLUMNS.items() if key]
REQUIRED = ("mark", "name", "status", "step", "best_val")
OPTIONAL = ("root", "loss", "preset", "val_loss", "tokens", "tok_s", "duration", "device", "name", "started", "tags")
CUT = ("root", "preset", "device", "tags")  # text cut in the middle when it does not fit whole: tags, the sort column


class RunsScreen(RunActions, RunsQueueKeys, Screen):
    HELP = ("One row per run directory; damaged ones (unreadable meta.json, garbage lines,\n"
            "a corrupt checkpoint) say what is wrong in the line under the table.\n"
            "Actions apply to the selected runs (space), else to the run under the cursor.\n"
            "Resume asks for the new max steps (more than done, for a completed run).\n"
            "Rename and tags are refused while a run is running: its trainer owns meta.json.\n"
            "Click a column header to sort by it; click again to reverse.\n" + RunsQueueKeys.HELP)
    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("space", "toggle_select", "Select"),
        Binding("a", "select_all", "All/none", show=False),
        Binding("slash", "focus_filter", "Filter", show=False),  # the filter box says "/ filter"
        Binding("f", "status_filter", "Status filter", show=False),
        Binding("o", "sort(False)", "Sort by next column", show=False),
        Binding("O", "sort(True)", "Reverse sort", show=False),
        Binding("c", "compare", "Compare"),
        *RunActions.BINDINGS,
        *RunsQueueKeys.BINDINGS,
        Binding("q,escape", "back", "Back", show=False),  # q and esc: back, as on every screen (in help)
        Binding("question_mark", "app.help", "Help"),
    ]

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []  # every run, as last read
        self.shown: list[dict] = []  # after filter and sort, in table order
        self.selected: set[str] = set()
        self.status_filter = "all"
        self.sort_key, self.sort_reverse = "started", True
        self.columns: list[str] = []
        self.table_layout = None
        self.drawn: dict[str, list] = {}  # run key -> its cells as drawn: a tick writes only the changed ones
        self.loaded = False
        self.labels: dict[str, str] = {}  # run key -> its name as the table shows it

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

    def on_runs_changed(self, message: RunsChanged) -> None:
        self.reload()  # every poll tick of the app: the summaries are the app's, already read

    def on_resize(self) -> None:
        if self.loaded:
            self.show()

    def reload(self) -> None:
        if not self.app.tracker.listed:
            return
        self.rows, self.loaded = list(self.app.tracker.rows.values()), True
        self.selected &= {r["key"] for r in self.rows}
        self.show()

    # -- the table

    def many_roots(self) -> bool:
        return len(self.app.runs_roots) > 1

    def lay_out(self, shown: list[dict]) -> tuple[list[str], dict[str, int], list[list]]:
        """The columns that fit the terminal (cells.fit_columns), their widths, each row's cells."""
        keys = [k for k in COLUMNS if k != "root" or self.many_roots()]
        shape = Columns({k: self.header(k) for k in keys}, REQUIRED,
                        tuple(k for k in dict.fromkeys((self.sort_key, *OPTIONAL)) if k in keys), NAME_WIDTH,
                        tuple({"tags", self.sort_key} & set(CUT)))
        every = [{k: printable(r["name"]) if k == "name" else self.cell(k, r) for k in keys} for r in shown]
        columns, widths, every = fit_columns(shape, every, table_space(self.query_one("#runs-table", DataTable), len(shown)),
                                             small={"step": [current_step(r) for r in shown]})
        self.labels = {r["key"]: cells["name"] for r, cells in zip(shown, every)}
        for r, cells in zip(shown, every):
            cells["name"] = cell(cells["name"], "bold red" if r["problem"] else "")
        return columns, widths, [[cells[k] for k in columns] for cells in every]

    def sortable(self) -> list[str]:
        return [k for k in SORTABLE if k != "root" or self.many_roots()]

    def show(self) -> None:
        """Filter, sort and (re)fill the table, keeping the cursor on the same run."""
        table = self.query_one("#runs-table", DataTable)
        text = self.query_one("#runs-filter", Input).value
        statuses = () if self.status_filter == "all" else (self.status_filter,)
        shown = [r for r in self.rows if matches(r, text, statuses)]
        shown = sort_rows(shown, COLUMNS[self.sort_key][1], self.sort_reverse)
        current = self.current_id()
        columns, widths, rows = self.lay_out(shown)
        layout = set_columns(table, columns, [self.header(k) for k in columns], widths, self.table_layout)
        rebuild, self.columns, self.table_layout = layout != self.table_layout, columns, layout
        ids = [r["key"] for r in shown]
        self.drawn = write_rows(table, columns, dict(zip(ids, rows)), self.drawn, rebuild)
        self.shown = shown
        if current in ids and ids.index(current) != table.cursor_row:  # moving it scrolls to it: only when it moved
            table.move_cursor(row=ids.index(current))
        self.show_state()
        self.show_detail()

    def header(self, key: str) -> str:
        label = COLUMNS[key][0]
        if key == self.sort_key:
            label += " ▼" if self.sort_reverse else " ▲"
        return label

    def cell(self, key: str, row: dict) -> Text:
        if key == "mark":
            return Text("✓", style="bold green") if row["key"] in self.selected else Text(" ")
        return COLUMNS[key][2](row)

    def show_state(self) -> None:
        n, total = len(self.shown), len(self.rows)
        parts = [f"{n} of {total} runs" if n != total else f"{total} runs"]
        damaged = sum(r["status"] == "damaged" for r in self.rows)
        if damaged:
            parts.append(f"{damaged} damaged")
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        sort = "" if self.sort_key in self.columns else f": {self.header(self.sort_key)}"  # its column did not fit
        parts.append(f"status: {self.status_filter} (f) · sort{sort} (o) · ? keys")
        self.query_one("#runs-state", Static).update(Text(" · ".join(parts)))
        self.query_one("#runs-table").border_title = Text(printable(self.app.roots_title()))
        self.query_one("#runs-table").border_subtitle = Text(self.app.tracker.queue.line(max(30, self.size.width - 8)))

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
            where = ", ".join(printable(str(r)) for r in self.app.runs_roots)
            if not self.loaded:
                detail.update(Text("reading the runs roots…", style="dim"))
            elif not self.rows:
                problem = root_problem(self.app.runs_root)  # "not found" is a new setup's: no runs yet
                detail.update(Text(f"runs root {printable(str(self.app.runs_root))}: {problem}", style="bold red")
                              if problem and problem != "not found" else
                              Text(f"no runs in {where} yet: launch one from the launch screen (q)"))
            else:
                detail.update(Text(f"no run of {len(self.rows)} matches the filter and status "
                                   f"{self.status_filter} (f changes it)"))
            return
        ran = "not started" if never_started(row) else f"started {fmt_time(row['started'])} · {fmt_duration(row['duration'])}"
        line1 = Text.assemble((printable(row["id"]), "bold"), f"  {row['preset'] or '–'} · {row['device'] or '–'}"
                              f" · {ran}"
                              f" · val {fmt_loss(row['val_loss'])} · checkpoints {row['checkpoints']}",
                              f" · tags {', '.join(row['tags'])}" if row["tags"] else "",
                              f" · root {printable(row['root'])}" if self.many_roots() else "")
        trouble = note(row)
        line2 = Text(trouble, style="bold red") if trouble else Text(printable(row["path"]), style="dim")
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

    # -- the run(s) an action applies to

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
            self.post_message(OpenRun(row["key"]))

    def action_compare(self) -> None:
        chosen = [r for r in self.shown if r["key"] in self.selected]
        if not 2 <= len(chosen) <= MAX_COMPARE:
            self.notify(f"select 2 to {MAX_COMPARE} runs with space to compare ({len(chosen)} selected)",
                        severity="warning")
            return
        from app.screens.compare import CompareScreen

        names = [r["name"] for r in chosen]
        names = [n if names.count(n) == 1 else f"{n} ({printable(Path(r['root']).name)})"
                 for n, r in zip(names, chosen)]
        self.app.push_screen(CompareScreen([Path(r["path"]) for r in chosen], names))
