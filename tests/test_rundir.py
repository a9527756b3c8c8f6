import json
import os
import socket
import subprocess
import sys
import time

import pytest

from gigagpt import rundir


def test_read_jsonl_offsets_torn_lines_and_garbage(tmp_path):
    p = tmp_path / "metrics.jsonl"
    with open(p, "w") as f:
        rundir.append_jsonl(f, {"kind": "train", "step": 1})
        f.write('{"kind": "train", "st')  # a writer mid-line
    recs, off, bad = rundir.read_jsonl(p)
    assert recs == [{"kind": "train", "step": 1}] and bad == 0
    assert off == len(b'{"kind":"train","step":1}\n')
    with open(p, "a") as f:
        f.write('ep": 2}\nnot json\n[1, 2]\n{"kind": "eval", "step": 2}\n')
    recs, off2, bad = rundir.read_jsonl(p, off)
    assert [r["kind"] for r in recs] == ["train", "eval"] and bad == 2 and off2 == p.stat().st_size
    assert rundir.read_jsonl(p, off2) == ([], off2, 0)
    assert rundir.read_jsonl(tmp_path / "missing.jsonl", 7) == ([], 7, 0)


def test_apply_resumes_drops_rolled_back_steps():
    recs = [{"kind": "train", "step": s} for s in (1, 2, 3, 4, 5)] + [{"kind": "eval", "step": 4}]
    recs += [{"kind": "event", "event": "resume", "step": 3}, {"kind": "train", "step": 4}]
    out = rundir.apply_resumes(recs)
    assert [(r["kind"], r["step"]) for r in out] == [
        ("train", 1), ("train", 2), ("train", 3), ("event", 3), ("train", 4)]


def test_effective_status_dead_pid_and_stale_heartbeat():
    me = {"status": "running", "pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time()}
    assert rundir.effective_status(me) == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert rundir.effective_status({**me, "pid": dead.pid}) == "crashed"
    other = {**me, "host": "elsewhere", "pid": 1}
    assert rundir.effective_status(other) == "running"
    assert rundir.effective_status({**other, "heartbeat": time.time() - 3600}) == "crashed"
    assert rundir.effective_status({**me, "status": "stopped", "pid": dead.pid}) == "stopped"


def test_read_meta_reports_what_is_wrong(tmp_path):
    with pytest.raises(rundir.RunError, match="missing"):
        rundir.read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(rundir.RunError, match="not valid JSON"):
        rundir.read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"status": "weird"}))
    with pytest.raises(rundir.RunError, match="status = 'weird'"):
        rundir.read_meta(tmp_path)


def test_run_ids():
    for good in ("tiny-20260101-120000", "my_run.2", "A+B"):
        assert rundir.check_run_id(good) == good
    for bad in ("../x", "a/b", "..", ".hidden", "", "a b", "x" * 200):
        with pytest.raises(rundir.RunError):
            rundir.check_run_id(bad)


def test_new_run_id_never_reuses_a_directory(tmp_path):
    a = rundir.new_run_id(tmp_path, "demo")
    (tmp_path / a).mkdir()
    b = rundir.new_run_id(tmp_path, "demo")
    assert b != a and b.startswith(a)


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    p = tmp_path / "ckpt.pt"
    rundir.atomic_write(p, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        rundir.atomic_write(p, broken)
    assert p.read_bytes() == b"old" and [q.name for q in tmp_path.iterdir()] == ["ckpt.pt"]
