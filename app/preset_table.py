"""The launch screen's presets table: each preset's parameters, memory per device, whether it fits
the chosen device, and FLOP/token. A narrow terminal (80 columns) keeps the columns that decide a
launch (name, params, fits); the plan under the table gives the chosen preset's other numbers
(plan_text)."""
from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from app import launch
from app.cells import fit_all, table_space
from app.launch import Device, Preset
from gigagpt import plan

# column key -> header. Every preset shows its name (cut to the room left), params and fits; the
# others are dropped, in DROPPABLE's order, while the table is too narrow for them.
LABELS = {"preset": "preset", "params": "params", "memory": "mem/device", "fits": "fits", "flops": "FLOP/tok"}
DROPPABLE = ("flops", "memory")
NAME_MIN = 8  # a preset name is never cut shorter than this


class PresetTable(DataTable):
    def __init__(self, presets: list[Preset], **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.presets = presets
        # what each row shows, column key -> cell; a file name is Text: not markup
        self.cells: dict[str, dict[str, Text]] = {p.name: {"preset": Text(p.name)} for p in presets}

    def on_mount(self) -> None:
        for key, label in LABELS.items():
            self.add_column(label, key=key)
        for preset in self.presets:
            self.add_row(*[self.cells[preset.name].get(key, "") for key in LABELS], key=preset.name)

    def on_resize(self, event: events.Resize) -> None:
        self.fit_columns()

    def show_numbers(self, chosen: Preset | None, form_cfg, device: Device, nproc: int) -> None:
        """Numbers for every preset on the device; the chosen preset's row uses the form's config."""
        for preset in self.presets:
            cfg = form_cfg if (preset is chosen and form_cfg) else preset.cfg
            if cfg is None:
                cells = ("?", "?", Text("error", style="red"), "?")
            else:
                row = launch.plan_row(cfg, device, nproc if preset is chosen else 1)
                cells = (plan.human_count(row["params"]), plan.human_bytes(row["memory"]["total"]),
                         Text("yes", style="green") if row["fits"] else Text("no", style="bold red"),
                         plan.human(row["flops"]))
            for key, value in zip(("params", "memory", "fits", "flops"), cells):
                self.set_cell(preset.name, key, value if isinstance(value, Text) else Text(value))
        self.fit_columns()

    def set_cell(self, name: str, key: str, value: Text) -> None:
        self.cells[name][key] = value
        if key in self.columns:
            self.update_cell(name, key, value)

    def width(self, key: str) -> int:
        """The column's width with its padding, were it shown."""
        widths = [cells[key].cell_len for cells in self.cells.values() if key in cells]
        return max([len(LABELS[key]), *widths]) + 2 * self.cell_padding

    def fit_columns(self) -> None:
        """Names cut to the room params and fits leave them; then the columns that fit."""
        if not self.size.width:
            return  # not laid out yet
        room = table_space(self, len(self.presets))
        names = [p.name for p in self.presets]
        room_for_names = room - self.width("params") - self.width("fits") - 2 * self.cell_padding
        for name, label in zip(names, fit_all(names, max(NAME_MIN, room_for_names))):
            if self.cells[name]["preset"].plain != label:
                self.set_cell(name, "preset", Text(label))
        wanted = list(LABELS)
        for key in DROPPABLE:
            if sum(self.width(k) for k in wanted) <= room:
                break
            wanted.remove(key)
        shown = [key.value for key in self.columns]
        same = 0
        while same < min(len(shown), len(wanted)) and shown[same] == wanted[same]:
            same += 1
        for key in shown[same:]:
            self.remove_column(key)
        for key in wanted[same:]:  # added back in their order, after the ones kept
            self.add_column(LABELS[key], key=key)
            for name, cells in self.cells.items():
                if key in cells:
                    self.update_cell(name, key, cells[key])


def plan_text(preset: Preset | None, form_cfg, device: Device, nproc: int) -> Text:
    """The chosen preset's plan: size, FLOP/token, tokens/step; memory per device by part; fits."""
    if preset is None:
        return Text("")
    if preset.error:
        return Text(preset.error, style="red")
    cfg = form_cfg or preset.cfg
    row = launch.plan_row(cfg, device, nproc)
    mem = row["memory"]
    fits = Text("fits", style="green") if row["fits"] else Text("does NOT fit", style="bold red")
    return Text.assemble(
        (preset.name, "bold"), f" · {plan.human_count(row['params'])} params · "
        f"{plan.human(row['flops'])}FLOP/token · {plan.tokens_per_step(cfg):,} tokens/step\n",
        f"{plan.human_bytes(mem['total'])} per device: "
        + " · ".join(f"{part} {plan.human_bytes(size)}" for part, size in mem.items() if part != "total")
        + "\n", fits, f" in {device.label}",
        f" · {nproc} processes, {row['strategy']}" if nproc > 1 else "")
