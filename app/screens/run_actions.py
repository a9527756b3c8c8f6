"""What the runs screen does to runs besides showing them: resume, sample, export, rename, tag,
stop, kill and delete. Every one goes through the run store (gigagpt.store.actions, export), which
refuses what cannot be done (a running run, a damaged meta.json, a path that is not a run) with a
one-line RunError that is shown as it is.

RunActions is mixed into RunsScreen, which provides current(), one_target() and targets()."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from textual import work
from textual.binding import Binding

from app import launch
from app.messages import OpenRun, RefreshRuns
from app.screens.dialogs import AskScreen, ConfirmScreen
from gigagpt.store.actions import check_tags, clean_name, delete, rename, running_pid, send_signal, set_tags
from gigagpt.store.export import check_target, export_csv, export_tensorboard
from gigagpt.store.files import RunError
from gigagpt.store.meta import printable


def label(row: dict) -> str:
    return printable(row["id"])


class RunActions:
    BINDINGS = [
        Binding("r", "resume", "Resume"),
        Binding("g", "sample", "Sample"),
        Binding("e", "export", "Export", show=False),
        Binding("h", "export_hf", "Export for Hugging Face", show=False),
        Binding("n", "rename", "Rename", show=False),
        Binding("t", "tags", "Tags", show=False),
        Binding("s", "stop", "Stop", show=False),
        Binding("k", "kill", "Kill", show=False),
        Binding("d", "delete", "Delete", show=False),
    ]

    def action_resume(self) -> None:
        row = self.one_target("resume")
        if row is None:
            return
        if row["status"] in ("running", "starting", "damaged"):
            why = f"it is {row['status']}" + (f" ({row['problem']})" if row["status"] == "damaged" else "")
            self.notify(f"cannot resume {label(row)}: {why}", severity="warning")
            return
        if not row["checkpoints"] or row["checkpoint_problem"]:
            self.notify(f"cannot resume {label(row)}: {row['checkpoint_problem'] or 'it has no checkpoint'}",
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
                self.notify(f"cannot resume {label(row)}: {e}", severity="error")
                return
            self.notify(f"resuming {label(row)} from step {row['last_checkpoint']} to {steps}")
            self.post_message(OpenRun(row["key"]))

        default = 2 * target if row["status"] == "completed" else target
        self.app.push_screen(AskScreen(
            f"Resume {row['name']}", f"{row['status']} at step {done} of {target}, last checkpoint at step "
            f"{row['last_checkpoint']}. Train up to step:", str(default or ""), check), answered)

    def action_sample(self) -> None:
        row = self.one_target("sample from")
        if row is None:
            return
        if not row["checkpoints"] or row["checkpoint_problem"]:
            self.notify(f"cannot sample from {label(row)}: "
                        f"{row['checkpoint_problem'] or 'it has no checkpoint yet'}", severity="warning")
            return
        from app.screens.sample import SampleScreen

        self.app.push_screen(SampleScreen(Path(row["path"]), row["name"]))

    def action_export(self) -> None:
        chosen = self.targets()
        if not chosen:
            self.notify("no run to export", severity="warning")
            return
        stem = label(chosen[0]) if len(chosen) == 1 else f"gigagpt-{len(chosen)}-runs"
        default = str(Path.cwd() / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.csv")

        dirs = [Path(r["path"]) for r in chosen]

        def check(text: str) -> Path:
            path = Path(text.strip()).expanduser()
            if not text.strip():
                raise ValueError("give a path")
            try:
                check_target(path, dirs)
            except RunError as e:
                raise ValueError(str(e)) from None
            if path.suffix != ".csv" and path.exists() and not path.is_dir():
                raise ValueError(f"{path}: exists and is not a directory")
            if not path.parent.is_dir():
                raise ValueError(f"{path.parent}: no such directory")
            return path

        self.app.push_screen(AskScreen(
            f"Export {len(chosen)} run(s)", "A path ending in .csv writes a CSV file (run,step,kind,metric,value);\n"
            "any other path is a directory of TensorBoard event files, one per run.", default, check),
            lambda path: path and self.export(dirs, path))

    @work(thread=True, exit_on_error=False, group="export")
    def export(self, dirs: list[Path], path: Path) -> None:
        try:
            if path.suffix == ".csv":
                with open(path, "w", newline="", encoding="utf-8") as f:
                    n = export_csv(dirs, f)
                message = f"wrote {n:,} rows to {path}"
            else:
                export_tensorboard(dirs, path)
                message = f"wrote TensorBoard event files of {len(dirs)} run(s) under {path}"
        except (RunError, OSError) as e:
            self.app.call_from_thread(self.notify, f"export failed: {e}", severity="error")
            return
        self.app.call_from_thread(self.notify, message)

    def action_export_hf(self) -> None:
        row = self.one_target("export for Hugging Face")
        if row is None:
            return
        if not row["checkpoints"]:
            self.notify(f"cannot export {label(row)}: it has no checkpoint yet", severity="warning")
            return

        def check(text: str) -> Path:
            path = Path(text.strip()).expanduser()
            if not text.strip():
                raise ValueError("give a directory")
            if not path.parent.is_dir():
                raise ValueError(f"{path.parent}: no such directory")
            return path

        self.app.push_screen(AskScreen(
            f"Export {label(row)} for Hugging Face", "A transformers model directory (GPT2LMHeadModel, tokenizer, "
            "model card) from its newest checkpoint;\na new or empty directory, or an earlier export (replaced):",
            str(Path.cwd() / f"{row['id']}-hf"), check), lambda path: path and self.export_hf(Path(row["path"]), path))

    @work(thread=True, exit_on_error=False, group="export")
    def export_hf(self, run_dir: Path, out: Path) -> None:
        self.app.call_from_thread(self.notify, f"exporting {printable(run_dir.name)} to {out} ...")
        try:
            ok, said = launch.export_hf(run_dir, out)  # `gigagpt export-hf`: torch stays out of the dashboard
        except OSError as e:
            ok, said = False, str(e)
        self.app.call_from_thread(self.notify, said if ok else f"export failed: {said}",
                                  severity="information" if ok else "error")

    def refused_damaged(self, row: dict, verb: str) -> bool:
        """A run whose meta.json is damaged cannot be renamed or tagged (the store would have to
        rewrite what it cannot read): said at once, before a dialog asks for anything."""
        if row["status"] == "damaged":
            self.notify(f"cannot {verb} {label(row)}: {row['problem']}", severity="warning")
            return True
        return False

    def action_rename(self) -> None:
        row = self.one_target("rename")
        if row is None or self.refused_damaged(row, "rename"):
            return

        def check(text: str) -> str:
            try:
                return clean_name(text)
            except RunError as e:
                raise ValueError(str(e)) from None

        def answered(name: str | None) -> None:
            if name is not None:
                self.edit_meta(row, "rename", lambda d: rename(d, name), f"renamed {label(row)}")

        self.app.push_screen(AskScreen(f"Rename {label(row)}", "Display name (the directory keeps its id):",
                                       row["name"], check), answered)

    def action_tags(self) -> None:
        row = self.one_target("tag")
        if row is None or self.refused_damaged(row, "tag"):
            return

        def check(text: str) -> list[str]:
            try:
                return check_tags(text.replace(",", " ").split())
            except RunError as e:
                raise ValueError(str(e)) from None

        def answered(tags: list[str] | None) -> None:
            if tags is not None:
                self.edit_meta(row, "tag", lambda d: set_tags(d, replace=tags), f"tags of {label(row)} set")

        self.app.push_screen(AskScreen(f"Tags of {row['name']}", "Tags, separated by spaces:",
                                       " ".join(row["tags"]), check, placeholder="e.g. baseline lr-sweep"), answered)

    def edit_meta(self, row: dict, verb: str, edit, message: str) -> None:
        try:
            edit(Path(row["path"]))
        except (RunError, OSError) as e:
            said = str(e)  # the store's line names the run when the run is the reason ("run X: running; ...")
            self.notify(said if said.startswith(f"run {row['id']}") else f"cannot {verb} {label(row)}: {said}",
                        severity="error")
            return
        self.notify(message)
        self.post_message(RefreshRuns())

    def running_target(self, verb: str) -> tuple[dict, int] | None:
        """The run under the cursor and its live trainer's pid, or None (said why)."""
        row = self.one_target(verb)
        if row is None:
            return None
        try:
            return row, running_pid(Path(row["path"]))
        except (RunError, OSError) as e:
            self.notify(f"cannot {verb}: {e}", severity="warning")
            return None

    def action_stop(self) -> None:
        target = self.running_target("stop")
        if target is None:
            return
        row, pid = target
        send_signal(pid, signal.SIGTERM)
        self.notify(f"stop requested: {label(row)} checkpoints after this step, then exits")

    def action_kill(self) -> None:
        target = self.running_target("kill")
        if target is None:
            return
        row, pid = target

        def answered(yes: bool | None) -> None:
            if yes:
                send_signal(pid, signal.SIGKILL)
                self.notify(f"killed {label(row)} (pid {pid})", severity="warning")

        self.app.push_screen(ConfirmScreen(
            f"Kill {label(row)} (pid {pid}) with SIGKILL?\nSteps since its last checkpoint (step "
            f"{row['last_checkpoint']}) are lost. (s stops it gracefully instead.)"), answered)

    def action_delete(self) -> None:
        chosen = self.targets()
        if not chosen:
            self.notify("no run to delete", severity="warning")
            return
        running = [label(r) for r in chosen if r["status"] in ("running", "starting")]
        if running:
            self.notify(f"not deleting: {', '.join(running)} running; stop it first", severity="error")
            return
        names = ", ".join(label(r) for r in chosen[:5]) + (f" and {len(chosen) - 5} more" if len(chosen) > 5 else "")

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            failed = []
            for row in chosen:
                try:
                    delete(Path(row["path"]), self.app.runs_roots)
                except (RunError, OSError) as e:
                    failed.append(f"{label(row)}: {e}")
            self.selected -= {r["key"] for r in chosen}
            if failed:
                self.notify("not deleted: " + "; ".join(failed), severity="error")
            else:
                self.notify(f"deleted {len(chosen)} run(s)")
            self.post_message(RefreshRuns())

        self.app.push_screen(ConfirmScreen(
            f"Delete {len(chosen)} run(s): {names}?\nTheir metrics, logs and checkpoints are removed for good."),
            answered)
