"""Checkpoint loading that cannot run code (issue 13): a real FSDP run's sharded checkpoint with a
crafted .metadata pickle, a crafted non-tensor item, a storage path out of the checkpoint, and a
crafted .pt, each refused with one line naming the file by `gigagpt sample`, an FSDP resume under
torchrun and the dashboard's sample screen; the marker file the pickle would create never appears."""
import builtins
import os
import pickle

import pytest
import torch
from conftest import TINY, gigagpt
from damaged import copy_run, replace
from test_damaged_dash import browser, fail, go_to, run_app, runs_screen, wait_for
from textual.widgets import Static

from gigagpt.safe_dcp import read_metadata
from gigagpt.store.layout import checkpoints
from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import load_metrics

STEPS = ["--set", "train.max_steps=4", "--set", "train.checkpoint_interval=1", "--set", "train.log_interval=1",
         "--set", "train.eval_interval=100", "--set", "train.eval_steps=1"]


class Plant:
    """Unpickled by plain pickle (or torch.load without weights_only), it creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.fixture(scope="module")
def sharded(dataset, tmp_path_factory):
    """A real FSDP run (2 processes, gloo) stopped at step 2: step_00000001.dcp, step_00000002.dcp."""
    run = tmp_path_factory.mktemp("sharded") / "fs"
    gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *TINY, *STEPS, "--set", "train.parallel=fsdp",
            "--nproc", "2", "--run-dir", run, "--stop-at", "2")
    assert [p.name for p in checkpoints(run)] == ["step_00000001.dcp", "step_00000002.dcp"]
    return run


@pytest.fixture(scope="module")
def whole(dataset, tmp_path_factory):
    """A real one-process run stopped at step 2: step_00000001.pt, step_00000002.pt."""
    run = tmp_path_factory.mktemp("whole") / "pt"
    gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *TINY, *STEPS, "--run-dir", run, "--stop-at", "2")
    return run


def metadata_reduce(ckpt, marker):
    """.metadata a pickle whose unpickling opens `marker` for writing."""
    replace(ckpt / ".metadata", pickle.dumps(Plant(marker)))


def byte_item_reduce(ckpt, marker):
    """Genuine metadata classes, but the embedding declared a non-tensor item stored in a torch.save
    file holding the planted reduce (stock DCP torch.loads such items with weights_only=False)."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, MetadataIndex

    torch.save(Plant(marker), ckpt / "planted.distcp")
    with open(ckpt / ".metadata", "rb") as f:
        meta = pickle.load(f)  # our own trainer's file
    meta.state_dict_metadata["model.wte.weight"] = BytesStorageMetadata()
    meta.storage_data[MetadataIndex("model.wte.weight")] = _StorageInfo(
        "planted.distcp", 0, os.path.getsize(ckpt / "planted.distcp"))
    replace(ckpt / ".metadata", pickle.dumps(meta))


def path_out_of_checkpoint(ckpt, marker):
    """Genuine metadata whose shards are read from another directory (here the older checkpoint)."""
    with open(ckpt / ".metadata", "rb") as f:
        meta = pickle.load(f)
    for info in meta.storage_data.values():
        info.relative_path = f"../step_00000001.dcp/{info.relative_path}"
    replace(ckpt / ".metadata", pickle.dumps(meta))


CRAFTED = {  # kind -> what the one line says after the checkpoint's name
    metadata_reduce: "refused: .metadata pickle names io.open, not a checkpoint metadata class",
    byte_item_reduce: "planted.distcp: item model.wte.weight: refused by torch.load(weights_only=True)",
    path_out_of_checkpoint: "refused: .metadata points at '../step_00000001.dcp/__",
}


def crafted_copy(src, dst, craft, marker, only_newest=False):
    run = copy_run(src, dst)
    newest = checkpoints(run)[-1]
    if only_newest:
        for older in checkpoints(run)[:-1]:
            os.rename(older, older.with_name(older.name + ".gone"))  # no longer a checkpoint
    craft(newest, marker)
    return run, newest


def err_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_genuine_metadata_reads_as_pickle_reads_it(sharded):
    """The allow-list covers everything a real FSDP checkpoint's .metadata holds."""
    for ckpt in checkpoints(sharded):
        with open(ckpt / ".metadata", "rb") as f:
            assert read_metadata(ckpt / ".metadata") == pickle.load(f)


@pytest.mark.parametrize("craft", CRAFTED, ids=lambda f: f.__name__)
def test_sample_refuses_a_crafted_sharded_checkpoint(sharded, tmp_path, gpt2_ready, craft):
    """Skipped and named when an older checkpoint loads; with none, one line and exit 2."""
    marker = tmp_path / "marker"
    run, newest = crafted_copy(sharded, tmp_path / "run", craft, marker)
    proc = gigagpt("sample", run, "--prompt", "Hi", "--max-new-tokens", "3", check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("Hi"), proc.stderr
    (line,) = err_lines(proc)
    assert line.startswith(f"gigagpt: sampling from step_00000001.dcp; skipped {newest.name}: {CRAFTED[craft]}"), line
    run, newest = crafted_copy(sharded, tmp_path / "alone", craft, marker, only_newest=True)
    proc = gigagpt("sample", run, "--prompt", "Hi", "--max-new-tokens", "3", check=False)
    assert proc.returncode == 2 and proc.stdout == "" and len(err_lines(proc)) == 1, proc.stderr
    assert f"no checkpoint loads ({newest.name}: {CRAFTED[craft]}" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("craft", [metadata_reduce, byte_item_reduce], ids=lambda f: f.__name__)
def test_fsdp_resume_refuses_a_crafted_sharded_checkpoint(sharded, tmp_path, craft):
    """Under torchrun (2 ranks): the crafted newest one is skipped, named and set aside, the run
    resumes from the older one; with no other one the resume refuses in one line, writing nothing."""
    marker = tmp_path / "marker"
    run, newest = crafted_copy(sharded, tmp_path / "run", craft, marker)
    proc = gigagpt("resume", run, "--stop-at", "3")
    assert "resumed from step_00000001.dcp at step 1" in proc.stdout, proc.stdout
    (event,) = [r for r in load_metrics(run) if r.get("event") == "checkpoint_skipped"]
    assert CRAFTED[craft] in event["reason"] and CRAFTED[craft] in (run / "train.log").read_text()
    assert (run / "checkpoints" / f"{newest.name}.skipped").is_dir()
    assert read_meta(run).status == "stopped" and read_meta(run).step == 3
    run, newest = crafted_copy(sharded, tmp_path / "alone", craft, marker, only_newest=True)
    before = (run / "metrics.jsonl").read_bytes(), (run / "meta.json").read_bytes()
    proc = gigagpt("resume", run, "--stop-at", "3", check=False)
    # each rank exits 2 with the same line, printed once (gigagpt.torchrun.say_once); the status passed on, no traceback
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(err_lines(proc)) == 1, proc.stderr
    assert f"gigagpt: error: run {run}: no checkpoint loads ({newest.name}: {CRAFTED[craft]}" in proc.stderr
    assert ((run / "metrics.jsonl").read_bytes(), (run / "meta.json").read_bytes()) == before
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
def test_sample_refuses_a_crafted_pt(whole, tmp_path, gpt2_ready, kind):
    marker = tmp_path / "marker"
    run = copy_run(whole, tmp_path / "run")
    newest = checkpoints(run)[-1]
    if kind == "raw pickle":
        replace(newest, pickle.dumps({"model": Plant(marker), "config": {}}))
        said = f"{newest.name}: unreadable (not a zip archive"
    else:
        newest.unlink()  # a hard link to the fixture's file
        torch.save({"model": Plant(marker), "config": {}}, newest)
        said = f"{newest.name}: refused by torch.load(weights_only=True)"
    proc = gigagpt("sample", run, "--prompt", "Hi", "--max-new-tokens", "3", check=False)
    assert proc.returncode == 0 and len(err_lines(proc)) == 1 and f"skipped {said}" in proc.stderr, proc.stderr
    checkpoints(run)[0].unlink()
    proc = gigagpt("sample", run, "--prompt", "Hi", "--max-new-tokens", "3", check=False)
    assert proc.returncode == 2 and len(err_lines(proc)) == 1 and f"({said}" in proc.stderr, proc.stderr
    assert not marker.exists()


def test_dashboard_sample_screen_shows_the_refusal(sharded, tmp_path, monkeypatch):
    """The runs screen's g, then ctrl+r: the sample screen says why in one line; no crash."""
    from app.screens.sample import SampleScreen

    settings = tmp_path / "gigagpt.toml"  # the user's settings stay out of it
    settings.write_text("")
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))
    marker = tmp_path / "marker"
    root = tmp_path / "runs"
    root.mkdir()
    run, newest = crafted_copy(sharded, root / "crafted", metadata_reduce, marker, only_newest=True)
    faults, shown = [], []

    async def body(pilot, seen):
        app = pilot.app
        screen = await runs_screen(app, pilot, faults)
        if screen is None or not await go_to(pilot, screen, "crafted"):
            faults.append("no row for the crafted run")
            return
        await pilot.press("g")
        if not await wait_for(pilot, lambda: isinstance(app.screen, SampleScreen), 10):
            faults.append(f"g did not open the sample screen: {seen.notes}")
            return
        await pilot.press("ctrl+r")
        status = app.screen.query_one("#sample-status", Static)
        if not await wait_for(pilot, lambda: "sampling failed" in str(status.content), 120):
            faults.append(f"no failure shown: {status.content}")
        shown.append(str(status.content))
        await pilot.press("escape")

    run_app(browser(root), body, faults)
    fail(faults)
    (text,) = shown
    assert "\n" not in text and f"{newest.name}: {CRAFTED[metadata_reduce]}" in text, text
    assert not marker.exists()
