"""The launch screen: presets with their plan, the launch form, and every run under the runs roots
(its summary from the run store, so every run shows its loss, followed or not)."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static

from app import launch
from app.cells import recent_table, set_columns, table_space, write_rows
from app.launch import FORM_FIELDS, Device, Preset
from app.messages import BrowseRuns, DevicesChanged, OpenRun, RunsChanged
from app.preset_table import PresetTable, plan_text
from app.screens.dialogs import ConfirmScreen
from app.screens.queue_actions import LaunchQueueKeys
from gigagpt.config import ConfigError
from gigagpt.store.files import RunError
from gigagpt.store.meta import printable

CHOICE_FIELDS = {"train.dtype": ("bfloat16", "float32"), "train.compile": ("false", "true"),
                 "train.parallel": ("auto", "ddp", "fsdp"), "train.activation_checkpointing": ("false", "true"),
                 "train.backend": ("torch", "cerebras"), "cerebras.target": ("CSX", "CPU")}
CEREBRAS_ONLY = tuple(key for key in FORM_FIELDS if key.startswith("cerebras."))  # shown for backend cerebras
NARROW = 100  # terminal columns below which the form narrows


def launch_question() -> ConfirmScreen:
    return ConfirmScreen("This config has not been checked for CSX.\n"
                         "y: run check-csx now (5-40 s), then launch if it compiles\nn: launch without checking")


def field_id(key: str) -> str:
    return "f-" + key.replace(".", "-")


class HomeScreen(LaunchQueueKeys, Screen):
    HELP = ("Pick a preset (the form takes its values), edit the form, launch with ctrl+r;\n"
            "tab moves through the form, esc leaves it. Enter on a run opens it.\n"
            "b browses every run: sort, filter, compare, resume, sample, export, delete.\n"
            "Memory is per device, no sharding: fp32 weights, grads, AdamW states, activations.\n"
            "Runs keep going when the dashboard quits; it re-attaches to them when it starts.\n"
            "backend cerebras: ctrl+t checks that the config compiles for CSX (no cluster needed);\n"
            "launching on CSX offers that check first.\n" + LaunchQueueKeys.HELP)
    BINDINGS = [
        Binding("ctrl+r", "launch", "Launch", priority=True),
        Binding("ctrl+t", "check_csx", "Check CSX", priority=True, show=False),  # a launch on CSX offers it too
        *LaunchQueueKeys.BINDINGS,
        Binding("p", "focus_table('presets')", "Presets", show=False),  # p, r: in help (80 columns fit no more)
        Binding("r", "focus_table('runs')", "Recent runs", show=False),
        Binding("b", "browse", "Browse runs"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help"),
        Binding("escape", "focus_table('presets')", "Leave form", show=False),
    ]
    # Screen classes the stylesheet lays out small terminals with (80x24 keeps fits and a few runs)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(self):
        super().__init__()
        self.presets: list[Preset] = launch.find_presets(self.app.config_dirs)
        self.preset: Preset | None = None
        self.run_order: list[str] = []
        self.run_cells: dict[str, list] = {}  # run key -> its cells as drawn (cells.write_rows)
        self.runs_layout = None  # the recent runs' columns as set (cells.set_columns)
        self.nproc = 1  # the processes field, once valid
        self.csx_passed: set[tuple] = set()  # override sets that `check-csx` lowered for CSX
        self.cerebras = False  # train.backend is cerebras: its fields and ctrl+t are offered

    # -- layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            with Vertical(id="presets-pane"):
                yield PresetTable(self.presets, id="presets")
                yield Static(id="plan")
            with VerticalScroll(id="form"):
                yield self._row("device", Select([(d.label, i) for i, d in enumerate(self.app.devices)],
                                                 value=0, allow_blank=False, id="device", compact=True))
                yield self._row("dataset", Select([], id="dataset", compact=True,
                                                  prompt="no prepared dataset"))
                for key, label in FORM_FIELDS.items():
                    if key in CHOICE_FIELDS:
                        widget = Select([(c, c) for c in CHOICE_FIELDS[key]], allow_blank=False,
                                        id=field_id(key), compact=True)
                    else:
                        widget = Input(id=field_id(key), compact=True)
                    yield self._row(label, widget, "cerebras-only" if key in CEREBRAS_ONLY else "")
                yield self._row("processes", Input("1", id="nproc", compact=True, restrict=r"[0-9]*"))
                yield self._row("run name", Input(id="run-name", compact=True, placeholder="preset name"))
                yield Button("Launch  ^r", id="launch", variant="primary", compact=True)
                yield Static(id="form-error")
        with Vertical(id="runs-pane"):
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    @staticmethod
    def _row(label: str, widget, classes: str = "") -> Horizontal:
        return Horizontal(Label(label, classes="field-label"), widget, classes=f"field {classes}".strip())

    def on_mount(self) -> None:
        self.query_one("#presets-pane").border_title = "Presets"
        self.query_one("#form").border_title = "Launch"
        table = self.query_one("#presets", PresetTable)
        self.fill_datasets()
        default = next((p for p in self.presets if p.name == "tiny"), self.presets[0] if self.presets else None)
        if default:
            table.move_cursor(row=self.presets.index(default))
            self.choose_preset(default)
        self.refresh_runs()

    # -- presets and the form

    @property
    def device(self) -> Device:
        return self.app.devices[self.query_one("#device", Select).value]

    def on_devices_changed(self, message: DevicesChanged) -> None:
        select = self.query_one("#device", Select)
        select.set_options([(d.label, i) for i, d in enumerate(self.app.devices)])
        select.value = 0
        self.refresh_plan()

    def fill_datasets(self) -> None:
        try:
            names = launch.datasets()
        except OSError as e:
            names = []
            self.notify(f"cannot list datasets: {e}", severity="error")
        select = self.query_one("#dataset", Select)
        select.set_options([(n, n) for n in names])

    def choose_preset(self, preset: Preset) -> None:
        self.preset = preset
        if preset.cfg:
            with self.prevent(Input.Changed, Select.Changed):
                for key, value in launch.form_values(preset.cfg).items():
                    widget = self.query_one(f"#{field_id(key)}")
                    widget.value = value
                datasets = self.query_one("#dataset", Select)
                names = [v for _, v in datasets._options if v != Select.NULL]
                if preset.cfg.data.dataset in names:
                    datasets.value = preset.cfg.data.dataset
                elif names and datasets.value == Select.NULL:
                    datasets.value = names[0]
        self.check_form()

    def form(self) -> dict[str, str]:
        return {key: str(self.query_one(f"#{field_id(key)}").value) for key in FORM_FIELDS}

    def show_backend_fields(self) -> None:
        """The Cerebras-only fields (and ctrl+t) while train.backend is cerebras, not for torch."""
        self.cerebras = self.query_one(f"#{field_id('train.backend')}", Select).value == "cerebras"
        for row in self.query(".cerebras-only"):
            row.display = self.cerebras
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "check_csx":
            return self.cerebras  # False: ctrl+t does nothing
        return super().check_action(action, parameters)

    def check_form(self):
        """Validate the form with the core's rules; show the first problem. (config, overrides) or None."""
        self.show_backend_fields()
        for widget in self.query(".field Input, .field Select"):
            widget.remove_class("-invalid")
        error = self.query_one("#form-error", Static)
        if self.preset is None:
            error.update("no presets found")
            return None
        dataset = self.query_one("#dataset", Select).value
        try:
            result = launch.config_from_form(self.preset, None if dataset == Select.NULL else dataset, self.form())
            self.nproc = launch.check_nproc(self.query_one("#nproc", Input).value, result[0], self.app.devices,
                                            self.device)
        except ConfigError as e:
            message = str(e)
            # Mark the field that the message names (the core says "train.lr = 'x': ...").
            for key in ["processes", *FORM_FIELDS, "data.dataset"]:
                if key in message:
                    widget_id = {"data.dataset": "dataset", "processes": "nproc"}.get(key, field_id(key))
                    self.query_one(f"#{widget_id}").add_class("-invalid")
                    break
            error.update(Text(message, style="bold red"))
            self.refresh_plan()
            return None
        error.update("")
        self.refresh_plan(result[0])
        return result

    def refresh_plan(self, form_cfg=None) -> None:
        """Numbers for every preset on the chosen device; the chosen preset's row uses the form."""
        self.query_one("#presets", PresetTable).show_numbers(self.preset, form_cfg, self.device, self.nproc)
        self.query_one("#plan", Static).update(plan_text(self.preset, form_cfg, self.device, self.nproc))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "presets" and event.row_key.value:
            preset = next(p for p in self.presets if p.name == event.row_key.value)
            if preset is not self.preset:
                self.choose_preset(preset)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "presets":
            self.query_one(f"#{field_id('train.max_steps')}").focus()
        elif event.data_table.id == "runs":
            self.post_message(OpenRun(event.row_key.value))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "run-name":
            self.check_form()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.check_form()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_launch()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()

    def action_focus_table(self, table_id: str) -> None:
        self.query_one(f"#{table_id}").focus()

    def action_browse(self) -> None:
        self.post_message(BrowseRuns())

    def action_launch(self) -> None:
        checked = self.check_form()
        if checked is None:
            self.app.bell()
            self.notify("not launched: " + str(self.query_one("#form-error", Static).content),
                        severity="error")
            return
        cfg, overrides = checked
        problem = launch.cerebras_problem(cfg)
        if problem:
            self.query_one("#form-error", Static).update(Text(problem, style="bold red"))
            self.app.bell()
            return
        if cfg.train.backend == "cerebras" and cfg.cerebras.target == "CSX" and tuple(overrides) not in self.csx_passed:
            def answered(check_first: bool) -> None:
                if check_first:
                    self.run_check_csx(overrides, then_launch=True)
                else:
                    self.launch_now(overrides)

            self.app.push_screen(launch_question(), answered)
            return
        self.launch_now(overrides)

    def action_check_csx(self) -> None:
        checked = self.check_form()
        if checked is None:
            self.app.bell()
            return
        self.run_check_csx(checked[1], then_launch=False)

    def run_check_csx(self, overrides: list[str], then_launch: bool) -> None:
        status = self.query_one("#form-error", Static)
        status.update(Text("check-csx: tracing and lowering for CSX (5-40 s) ...", style="yellow"))
        preset = self.preset

        def work() -> None:
            passed, last = launch.check_csx(preset, overrides)
            self.app.call_from_thread(self.csx_checked, overrides, passed, last, then_launch)

        self.run_worker(work, thread=True, exclusive=True, group="check-csx", exit_on_error=False)

    def csx_checked(self, overrides: list[str], passed: bool, last: str, then_launch: bool) -> None:
        self.query_one("#form-error", Static).update(Text(last, style="green" if passed else "bold red"))
        if passed:
            self.csx_passed.add(tuple(overrides))
            if then_launch:
                self.launch_now(overrides)
        else:
            self.app.bell()

    def launch_now(self, overrides: list[str]) -> None:
        name = self.query_one("#run-name", Input).value.strip()
        try:
            run_dir = launch.launch(self.preset, overrides, name, self.device, self.app.runs_root, self.nproc)
        except (RunError, OSError) as e:
            self.query_one("#form-error", Static).update(Text(str(e), style="bold red"))
            self.app.bell()
            return
        self.notify(f"launched {run_dir.name}")
        self.post_message(OpenRun(self.app.follow_launched(run_dir)))

    # -- the runs table

    def on_screen_resume(self) -> None:
        self.refresh_runs()

    def on_resize(self) -> None:
        self.call_after_refresh(self.refresh_runs)  # laid out to the width, once the table has its new height

    def on_runs_changed(self, message: RunsChanged) -> None:
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """Every run under the roots: the queued ones first, in queue order (queued #1, the next to
        start, on top: what comes next reads down from there), then the others newest first. Each
        with its summary (store.summary), so a run the dashboard does not follow shows its loss too.
        Only changed cells are written."""
        table = self.query_one("#runs", DataTable)
        title = self.app.roots_title()
        title = printable(title if self.app.tracker.listed else f"{title} · reading…")
        self.query_one("#runs-pane").border_title = Text(title)
        rows = self.app.tracker.rows  # newest first
        queued = sorted((r for r in rows.values() if r["status"] == "queued" and r.get("queue_position")),
                        key=lambda r: r["queue_position"])  # each root's #1, then each root's #2, ...
        order = list(dict.fromkeys([r["key"] for r in queued] + list(rows)))
        columns, widths, every = recent_table([rows[key] for key in order], table_space(table, len(order)))
        selected = self.run_order[table.cursor_row] if 0 <= table.cursor_row < len(self.run_order) else None
        layout = set_columns(table, columns, columns, widths, self.runs_layout)
        rebuild, self.runs_layout = layout != self.runs_layout, layout
        self.run_cells = write_rows(table, columns, dict(zip(order, every)), self.run_cells, rebuild)
        if (rebuild or order != self.run_order) and selected in order:  # rows written again: the cursor on its run
            table.move_cursor(row=order.index(selected))
        self.run_order = order
