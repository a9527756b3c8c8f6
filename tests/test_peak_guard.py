"""Issue 14: an MFU denominator that can be trusted (gigagpt/device.py's CPU peak cache), and the
non-finite guard without a per-step host read (gigagpt/guard.py), run on CPU in its accelerator
mode."""
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, gigagpt, overflow_checkpoint

import gigagpt.train as gtrain
from gigagpt import device as gdevice
from gigagpt import guard
from gigagpt.config import load_config
from gigagpt.store.layout import checkpoints
from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import load_metrics


@pytest.fixture
def probes(tmp_path, monkeypatch):
    """A private cache, and a fake probe that counts its calls (each returns 100 + the count)."""
    monkeypatch.setenv("GIGAGPT_CACHE", str(tmp_path / "cache"))
    calls = []

    def probe(dtype):
        calls.append(dtype)
        return 100.0 + len(calls)

    monkeypatch.setattr(gdevice, "probe_matmul_flops", probe)
    return calls


def cache_file(tmp_path):
    return tmp_path / "cache" / "cpu_peak.json"


def entry(**over):
    return {"flops": 5e11, "measured_at": time.time(), "machine": gdevice.machine_state(), **over}


def test_a_trusted_cache_entry_is_used_and_a_fresh_probe_is_cached(tmp_path, probes):
    assert gdevice.cpu_peak_flops("float32") == 101.0 and probes == ["float32"]
    assert gdevice.cpu_peak_flops("float32") == 101.0 and probes == ["float32"]  # cached
    assert gdevice.cpu_peak_flops("bfloat16") == 102.0  # its own entry; the other is kept
    saved = json.loads(cache_file(tmp_path).read_text())
    assert set(saved) == {"float32", "bfloat16"} and saved["float32"]["machine"] == gdevice.machine_state()


BAD_CACHES = {
    "not json": b"{not json", "binary": b"\xff\xfe\x00", "a list": b"[1, 2]", "entry not a dict": b'{"float32": 5e11}',
    "old format": json.dumps({"x86_64|2.13|2|float32": 5e11}).encode(),
    "nan": None, "infinite": None, "negative": None, "a bool": None, "a string": None, "stale": None,
    "in the future": None, "another machine": None, "other threads": None, "no machine": None, "deep": b"[" * 100000,
    "a huge integer": None, "a huge time": None,
}
ENTRIES = {
    "nan": {"flops": float("nan")}, "infinite": {"flops": float("inf")}, "negative": {"flops": -1.0},
    "a bool": {"flops": True}, "a string": {"flops": "5e11"},
    "stale": {"measured_at": time.time() - gdevice.PEAK_MAX_AGE_S - 10},
    "in the future": {"measured_at": time.time() + 86400},
    "another machine": {"machine": {**gdevice.machine_state(), "cpu": "another CPU"}},
    "other threads": {"machine": {**gdevice.machine_state(), "threads": 999}},
    "no machine": {"machine": None},
    "a huge integer": {"flops": 10**400}, "a huge time": {"measured_at": 10**400},  # valid JSON, no float
}


@pytest.mark.parametrize("case", sorted(BAD_CACHES))
def test_an_untrusted_cache_means_a_new_probe_never_a_crash(tmp_path, probes, case):
    path = cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    data = BAD_CACHES[case]
    path.write_bytes(data if data is not None else json.dumps({"float32": entry(**ENTRIES[case])}).encode())
    assert gdevice.cpu_peak_flops("float32") == 101.0 and probes == ["float32"]
    saved = json.loads(path.read_text())  # replaced by a good entry, the bad one gone
    assert list(saved) == ["float32"] and saved["float32"]["flops"] == 101.0


def test_a_cache_that_is_not_a_file_or_cannot_be_written_costs_only_a_probe(tmp_path, probes):
    cache_file(tmp_path).mkdir(parents=True)  # a directory where the file belongs
    assert gdevice.cpu_peak_flops("float32") == 101.0
    assert gdevice.cpu_peak_flops("float32") == 102.0  # nothing could be cached: measured again


def test_a_run_above_the_peak_measures_again_and_caches_at_least_its_own_figure(tmp_path, probes):
    path = cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"float32": entry(flops=50.0, measured_at=time.time() - 3600)}))
    assert gdevice.cpu_peak_flops("float32") == 50.0 and probes == []
    assert gdevice.cpu_peak_flops("float32", exceeded=80.0) == 101.0  # the probe beat the run
    assert gdevice.cpu_peak_flops("float32", exceeded=500.0) == 500.0  # probed moments ago: raised, no probe
    assert gdevice.cpu_peak_flops("float32") == 500.0 and len(probes) == 1
    path.write_text(json.dumps({"float32": entry(flops=50.0, measured_at=time.time() - 3600)}))
    assert gdevice.cpu_peak_flops("float32", exceeded=500.0) == 500.0 and len(probes) == 2  # the run beat the probe
    # raising without a probe keeps the probe's time: runs that keep beating it cannot put the next probe off forever
    probed_at = json.loads(path.read_text())["float32"]["measured_at"]
    assert gdevice.cpu_peak_flops("float32", exceeded=600.0) == 600.0 and len(probes) == 2
    assert json.loads(path.read_text())["float32"]["measured_at"] == probed_at


def test_a_bad_entry_of_the_other_dtype_is_dropped_not_a_crash(tmp_path, probes):
    path = cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"bfloat16": entry(flops=10**400)}))
    assert gdevice.cpu_peak_flops("float32") == 101.0 and list(json.loads(path.read_text())) == ["float32"]


def test_the_probe_measures_a_positive_rate():
    assert 0 < gdevice.probe_matmul_flops("float32", n=64, repeats=2) < 1e18
    assert gdevice.peak_info(torch.device("cpu"), "float32")[1:] == ("measured", "float32")
    assert gdevice.peak_info(torch.device("meta"), "float32")[:2] == (None, None)


def test_a_run_that_beats_a_low_cached_peak_records_the_new_one(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("GIGAGPT_CACHE", str(tmp_path / "cache"))
    cache_file(tmp_path).parent.mkdir(parents=True)
    cache_file(tmp_path).write_text(json.dumps({"float32": entry(flops=1.0, measured_at=time.time() - 3600)}))
    run = tmp_path / "run"
    gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", "--set", "model.block_size=32",
            "--set", "train.dtype=float32", "--set", "train.max_steps=4", "--set", "train.warmup_steps=2",
            "--run-dir", run)
    recs = load_metrics(run)
    start = next(r for r in recs if r.get("event") == "start")
    assert (start["peak_flops"], start["peak_source"], start["peak_dtype"]) == (1.0, "measured", "float32")
    peaks = [r for r in recs if r.get("event") == "peak"]
    assert peaks and peaks[0]["peak_flops"] >= peaks[0]["achieved_flops"] > 1.0
    first = recs.index(peaks[0])
    assert recs[first + 1]["kind"] == "train" and 0 < recs[first + 1]["mfu"] <= 1
    assert json.loads(cache_file(tmp_path).read_text())["float32"]["flops"] == peaks[-1]["peak_flops"]


# A fresh process each: the setting is process-wide. mallinfo2's hblkhd is the bytes in mapped blocks.
ALLOCATOR_CHECK = """
import ctypes, sys, torch
from gigagpt.device import reuse_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
info = ctypes.CDLL(None).mallinfo2
info.restype = Info
mapped = []
for on in (True, False, True):
    assert reuse_freed_memory(on)
    for _ in range(2):
        block = torch.ones(64 << 20, dtype=torch.uint8)
        mapped.append(info().hblkhd >= 64 << 20)
        del block
print(mapped)
"""


def test_reusing_freed_memory_serves_large_blocks_from_the_heap_and_switches_back():
    if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        assert not gdevice.reuse_freed_memory()
        return
    out = subprocess.run([sys.executable, "-c", ALLOCATOR_CHECK], cwd=REPO, capture_output=True, text=True, check=True)
    mapped = out.stdout.split()
    del mapped[2]  # switched back, the first block may still come from the heap's free one
    assert mapped == ["[False,", "False,", "True,", "False,", "False]"]


# ---------------------------------------------------------------------------- guard.Tally


def tally_run(losses, every_step, read_at):
    """A one-parameter model through fused AdamW, the given loss each step (gradient = loss):
    (its weights, the Tally, the first failure read)."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=0.1, fused=True)
    tally = guard.Tally(torch.device("cpu"), opt, 1, 0.0, every_step)
    failure = None
    for step, value in enumerate(losses, 1):
        loss = torch.tensor(value)
        p.grad = torch.full((3,), value)
        tally.add(step, loss, p.grad.norm())
        if every_step or step in read_at:
            _, failure = tally.read(step, False)
            if failure:
                break
        opt.step()
    return p.detach().clone(), tally, failure


def test_deferred_reads_sum_the_same_loss_as_reading_every_step():
    losses = [0.7, 1.25, 3.0e-3, 2.5]
    a, every, _ = tally_run(losses, True, ())
    b, deferred, _ = tally_run(losses, False, (4,))
    as_float32 = [float(torch.tensor(v)) for v in losses]
    assert torch.equal(a, b) and every.loss_sum == deferred.loss_sum == sum(as_float32) and every.norm == deferred.norm
    _, twice, _ = tally_run(losses, False, (2, 4))  # summed in two parts: the same up to rounding
    assert twice.loss_sum == pytest.approx(every.loss_sum, rel=1e-15)


def test_a_non_finite_step_is_skipped_on_the_device_and_named_at_the_next_read():
    good, _, _ = tally_run([0.5], False, ())
    weights, _, failure = tally_run([0.5, math.nan, 0.5, math.inf, 0.5], False, (5,))
    assert torch.equal(weights, good)  # steps 2-4 changed nothing, not even step 3's finite one
    assert failure.startswith("non-finite loss (nan) or gradient norm (nan) at step 2;")
    _, _, failure = tally_run([0.5, math.inf], True, ())
    assert "at step 2;" in failure


def test_every_step_mode_on_cpu_and_without_fused_adamw():
    p = torch.nn.Parameter(torch.ones(1))
    fused = torch.optim.AdamW([p], fused=True)
    assert guard.reads_every_step(torch.device("cpu"), fused)
    assert not guard.reads_every_step(torch.device("cuda"), fused)
    assert guard.reads_every_step(torch.device("cuda"), torch.optim.AdamW([p], foreach=True))


def train_in_process(monkeypatch, cfg_over, run, allocator=None, **kw):
    """gigagpt.train.train in this process with the accelerator's read schedule (guard.py); the
    allocator setting it asks for goes into `allocator` (pytest's own malloc is left as it is)."""
    monkeypatch.setattr(guard, "reads_every_step", lambda device, optimizer: False)
    allocator = [] if allocator is None else allocator
    monkeypatch.setattr(gtrain, "reuse_freed_memory", lambda on=True: allocator.append(on))
    monkeypatch.setattr(gtrain, "watch_stop_signals", lambda note="": [])  # keep pytest's handlers
    cfg = load_config(REPO / "configs" / "tiny.toml", cfg_over)
    return gtrain.train(cfg, run, "cpu", **kw)


def test_deferred_reads_log_what_reading_every_step_logs(dataset, tmp_path, monkeypatch):
    over = [f"data.dataset={dataset}", "model.block_size=32", "train.dtype=float32", "train.max_steps=9", "train.warmup_steps=2",
            "train.log_interval=4", "train.eval_interval=100", "train.checkpoint_interval=100"]
    gigagpt("train", "tiny", *[a for o in over for a in ("--set", o)], "--run-dir", tmp_path / "every")
    assert train_in_process(monkeypatch, over, tmp_path / "deferred") == 0

    def lines(run):
        return [(r["step"], r["loss"], r["grad_norm"]) for r in load_metrics(run) if r["kind"] == "train"]

    assert lines(tmp_path / "every") == lines(tmp_path / "deferred") and len(lines(tmp_path / "every")) == 3


def test_a_compiled_cpu_run_keeps_freed_memory_and_an_eager_one_leaves_malloc_alone(dataset, tmp_path, monkeypatch):
    over = [f"data.dataset={dataset}", "model.block_size=32", "train.max_steps=2", "train.warmup_steps=1",
            "train.eval_interval=100", "train.checkpoint_interval=100"]
    for compiled in ("false", "true"):
        allocator = []
        assert train_in_process(monkeypatch, [*over, f"train.compile={compiled}"], tmp_path / compiled, allocator) == 0
        assert allocator == ([True] if compiled == "true" else [])


def test_deferred_non_finite_fails_at_the_first_bad_step_without_a_checkpoint(dataset, tmp_path, monkeypatch):
    run = tmp_path / "nan"
    over = [f"data.dataset={dataset}", "model.block_size=32", "train.dtype=float32", "train.max_steps=50",
            "train.checkpoint_interval=1"]
    gigagpt("train", "tiny", *[a for o in over for a in ("--set", o)], "--run-dir", run, "--stop-at", 2)
    overflow_checkpoint(run)  # step 3's forward overflows
    over += ["train.checkpoint_interval=100", "train.log_interval=6", "train.eval_interval=100"]
    reads, read = [], guard.Tally.read
    monkeypatch.setattr(guard.Tally, "read", lambda self, step, stop: reads.append(step) or read(self, step, stop))
    assert train_in_process(monkeypatch, over, run, resume=True) == 1
    assert reads == [6]  # steps 3-5 were never read: step 3 was named at step 6
    meta = read_meta(run)
    assert meta.status == "failed" and "non-finite" in meta.failure and "at step 3;" in meta.failure
    assert [c.name for c in checkpoints(run)] == ["step_00000001.pt", "step_00000002.pt"]
