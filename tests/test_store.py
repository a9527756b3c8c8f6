"""The run store's own rules: ids, atomic writes, meta.json checks, the metrics reader, the lock,
deletion. Fuzzed where the claim is 'every input'."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from gigagpt.store import actions, curves, layout, lock, metrics, scan, tail
from gigagpt.store.files import RunError, append_jsonl, atomic_write
from gigagpt.store.meta import check_meta, printable, read_meta


def test_chunks_leave_a_torn_line_and_count_bad_lines(tmp_path):
    p = tmp_path / "metrics.jsonl"
    with open(p, "w") as f:
        append_jsonl(f, {"kind": "train", "step": 1, "loss": float("nan")})
        f.write('{"kind": "train", "st')  # a writer mid-line
    (start, data), = metrics.chunks(p)
    assert start == 0 and data == b'{"kind":"train","step":1,"loss":null}\n'
    with open(p, "a") as f:
        f.write('ep": 2}\nnot json\n[1, 2]\n{"kind": "eval", "step": 2, "val_loss": Infinity}\n'
                '{"kind": "train", "step": "5"}\n{"kind": "nope", "step": 1}\n{"kind": "train", "step": -1}\n'
                '{"kind": "train", "step": true}\n{"kind": "train", "step": 1.5}\n' + "[" * 100_000 + "\n")
    reader = metrics.Reader(p)
    recs = list(reader)
    assert [(r["kind"], r["step"]) for r in recs] == [("train", 1), ("train", 2), ("eval", 2)]
    assert recs[0]["loss"] is None and recs[2]["val_loss"] is None and reader.bad == 8


def test_resume_voids_later_steps_written_before_it(tmp_path):
    recs = [{"kind": "train", "step": s} for s in (1, 2, 3, 4, 5)] + [{"kind": "eval", "step": 4}]
    recs += [{"kind": "event", "event": "resume", "step": 3}, {"kind": "train", "step": 4}]
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert [(r["kind"], r["step"]) for r in metrics.Reader(p)] == [
        ("train", 1), ("train", 2), ("train", 3), ("event", 3), ("train", 4)]


def random_log(rng: random.Random) -> str:
    """A metrics.jsonl as crashes, resumes and damage leave it: steps go up, resumes go back to a
    checkpoint, and some lines are garbage, torn or odd."""
    lines, step = [], 0
    for _ in range(rng.randint(0, 60)):
        r = rng.random()
        if r < 0.55:
            step += rng.randint(1, 3)
            rec = {"kind": "train", "step": step, "loss": rng.choice([rng.random() * 5, None, "x"]),
                   "tokens": step * 8, "time": step * 1.0}
            text = json.dumps(rec, separators=(",", ":")) if rng.random() < 0.8 else json.dumps(rec)
        elif r < 0.7:
            text = json.dumps({"kind": "eval", "step": step, "val_loss": rng.choice([rng.random(), None])})
        elif r < 0.8 and step:
            step = rng.randint(0, step)
            text = json.dumps({"kind": "event", "event": "resume", "step": step})
        elif r < 0.85:
            text = json.dumps({"kind": "checkpoint", "step": step, "path": "x"})
        else:
            text = rng.choice(["garbage", "{", "[1]", '{"kind":"train","step":"3"}', "", "\x00\xff",
                               '{"kind":"eval","step":-4,"val_loss":1}', '{"kind":"train","step":1e3,"loss":1}',
                               '{"kind":"eval","step":2,"val_loss":NaN}',
                               # trainer-shaped train lines that only a JSON parser judges right
                               f'{{"kind":"train","step":{step},"loss":1_000,"tokens":1,"time":1}}',
                               f'{{"kind":"train","step":{step},"loss":+1,"tokens":1,"time":1}}',
                               f'{{"kind":"train","step":{step},"loss":.5,"tokens":1,"time":1}}',
                               f'{{"kind":"train","step":{step},"x":{{"loss":99}},"tokens":1,"time":1}}',
                               f'{{"kind":"train","step":{step},"loss":2,"tokens":1,"time":1,}}',
                               f'{{"kind":"train","step":{step},"loss":2,"loss":3,"tokens":1,"time":1}}',
                               f'{{"kind":"train","step":{step},"loss":2,"tokens":1,"time":1,"n":"é"}}',
                               f'{{"kind":"train","step":{step},"loss":nan,"tokens":1,"time":1}}',
                               f'{{"kind":"train","step":{step},"loss":2,"tokens":1,"time":1}}}}',
                               f'{{"kind":"train","step":{step},"loss":2,"tokens":1,"time":1}}x}}',
                               f'{{"kind":"train","step":{step},"loss":2,"tokens":[1],"time":1}}',
                               f'{{"kind":"train","step":{step},"n":"\\"loss\\":7","tokens":1,"time":1}}'])
        lines.append(text)
    return "\n".join(lines) + ("\n" if lines else "") + rng.choice(["", '{"kind":"tr'])


@pytest.mark.parametrize("seed", range(150))
def test_every_reader_agrees_with_the_exact_reader(tmp_path, seed):
    """Reader (export), scan (listing), curves (compare) and tail.Series (dashboard) read the same
    kept lines from random damaged logs with resumes, whole or fed in random pieces."""
    rng = random.Random(seed)
    text = random_log(rng)
    p = tmp_path / "metrics.jsonl"
    p.write_bytes(text.encode("utf-8", "surrogateescape"))
    reader = metrics.Reader(p)
    exact = list(reader)
    train = [r for r in exact if r["kind"] == "train"]
    evals = [r for r in exact if r["kind"] == "eval"]
    # the listing's scan, in one go and incrementally
    whole = scan.scan_metrics(p, None)
    data = p.read_bytes()
    p.write_bytes(b"")
    state = scan.scan_metrics(p, None)
    series, cursor = tail.Series(), tail.Cursor(p)
    cut = 0
    while cut < len(data):
        cut = min(len(data), cut + rng.randint(1, 400))
        with open(p, "r+b") as f:
            f.seek(0, os.SEEK_END)
            f.write(data[f.tell():cut])
        state = scan.scan_metrics(p, state)
        chunk, _ = cursor.read()
        series.apply(metrics.parse_lines(chunk)[0])
    for got in (whole, state):
        assert (got["last"] or {}).get("step") == (train[-1]["step"] if train else None)
        assert (got["last"] or {}).get("loss") == (train[-1].get("loss") if train else None)
        vals = [r["val_loss"] for r in evals if r.get("val_loss") is not None]
        assert got["best_val"] == (min(vals) if vals else None) and got["val"] == (vals[-1] if vals else None)
        assert scan.check_state(got) and got["bad_lines"] == reader.bad
    nan = lambda v: np.nan if v is None else v  # noqa: E731
    got = curves.load_curves(tmp_path, ("tokens",))
    assert got["train"]["step"].tolist() == [r["step"] for r in train]
    np.testing.assert_array_equal(got["train"]["loss"], [nan(r.get("loss")) for r in train])
    assert got["eval"]["step"].tolist() == [r["step"] for r in evals if r.get("val_loss") is not None]
    assert series.train.col("step").tolist() == [r["step"] for r in train]
    np.testing.assert_array_equal(series.train.col("loss"), [nan(r.get("loss")) for r in train])


def test_meta_fields_are_checked():
    good = {"id": "r", "status": "completed", "step": 3, "tags": ["a"], "created": 1.7e9}
    assert check_meta(good).step == 3
    for key, value in [("status", "weird"), ("step", "3"), ("step", -1), ("step", True), ("tags", "a"),
                       ("tags", ["a b"]), ("created", "yesterday"), ("created", float("nan")), ("pid", 0),
                       ("world_size", []), ("name", "x" * 500), ("heartbeat", [1]), ("versions", {"a": 1})]:
        with pytest.raises(RunError, match=f"meta.json: {key}: "):
            check_meta({**good, key: value})
    with pytest.raises(RunError, match="status: missing"):
        check_meta({"id": "r"})
    assert printable("a\x1b[31mb\u202ec\nd") == "a[31mbcd"


def test_read_meta_reports_what_is_wrong(tmp_path):
    with pytest.raises(RunError, match="missing"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text('{"status": "completed", "step": NaN}')
    with pytest.raises(RunError, match="not valid JSON"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").unlink()
    os.mkfifo(tmp_path / "meta.json")  # a plain open() would wait for a writer forever
    with pytest.raises(RunError, match="not a regular file"):
        read_meta(tmp_path)


def test_run_ids_and_exclusive_new_run_dirs(tmp_path):
    for good in ("tiny-20260101-120000", "my_run.2", "A+B"):
        assert layout.check_run_id(good) == good
    for bad in ("../x", "a/b", "..", ".hidden", "", "a b", "x" * 200):
        with pytest.raises(RunError):
            layout.check_run_id(bad)
    made, barrier = [], threading.Barrier(16)

    def launch():
        barrier.wait()
        made.append(layout.new_run_dir(tmp_path, "demo"))

    threads = [threading.Thread(target=launch) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16 and all(d.is_dir() for d in made)


def test_check_new_run_dir(tmp_path):
    layout.check_new_run_dir(tmp_path / "fresh")
    (tmp_path / "empty").mkdir()
    layout.check_new_run_dir(tmp_path / "empty")
    (tmp_path / "launched").mkdir()
    (tmp_path / "launched" / "train.log").write_text("starting\n")
    layout.check_new_run_dir(tmp_path / "launched")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "config.toml").write_text("mine")
    with pytest.raises(RunError, match="not empty and not a run"):
        layout.check_new_run_dir(tmp_path / "project")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "meta.json").write_text("{}")
    with pytest.raises(RunError, match="already holds a run"):
        layout.check_new_run_dir(tmp_path / "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        layout.check_new_run_dir(tmp_path / "file")


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    p = tmp_path / "ckpt.pt"
    atomic_write(p, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(p, broken)
    assert p.read_bytes() == b"old" and [q.name for q in tmp_path.iterdir()] == ["ckpt.pt"]


HOLD = ("import sys, time; from gigagpt.store.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(600)")


def hold_lock(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_the_lock_decides_running_even_when_suspended(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    host, old = socket.gethostname(), time.time() - 3600  # a heartbeat long stale
    proc = hold_lock(run)
    try:
        assert lock.is_locked(run) is True and lock.holder_pid(run) == proc.pid
        assert lock.liveness(run, host, 12345678, old) == "running"
        os.kill(proc.pid, signal.SIGSTOP)  # a debugger, a suspended laptop
        assert lock.liveness(run, host, proc.pid, old) == "running"
        with pytest.raises(RunError, match=f"in use by process {proc.pid}"):
            lock.RunLock(run).acquire(wait=0.2)
        os.kill(proc.pid, signal.SIGCONT)
    finally:
        proc.kill()
        proc.wait()
    assert lock.is_locked(run) is False and lock.liveness(run, host, proc.pid, time.time()) == "crashed"
    # a lock file left by a rename or a deletion, not by the trainer (an older one, which never
    # locks): the pid decides, and a pid younger than the run's heartbeat is a reused one
    assert lock.liveness(run, host, os.getpid(), time.time()) == "running"
    assert lock.liveness(run, host, os.getpid(), 1000.0) == "crashed"
    # no lock file (an older trainer): the pid decides here, the heartbeat elsewhere
    (run / lock.LOCK_FILE).unlink()
    assert lock.liveness(run, host, os.getpid(), time.time()) == "running"
    assert lock.liveness(run, host, os.getpid(), old) == "crashed"  # this process is younger than that beat
    assert lock.liveness(run, host, proc.pid, time.time()) == "crashed"
    assert lock.liveness(run, "elsewhere", None, time.time()) == "running"
    assert lock.liveness(run, "elsewhere", None, old) == "crashed"


def test_delete_only_what_the_store_recognises(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    run = root / "r1"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"id": "r1", "status": "completed"}))
    outside = tmp_path / "project"
    outside.mkdir()
    for name in ("config.toml", "train.log", "metrics.jsonl"):
        (outside / name).write_text("mine")
    copied = tmp_path / "elsewhere" / "r2"
    copied.mkdir(parents=True)
    (copied / "meta.json").write_text(json.dumps({"id": "r2", "status": "stopped"}))
    renamed = tmp_path / "elsewhere" / "r3"
    renamed.mkdir()
    (renamed / "meta.json").write_text(json.dumps({"id": "other", "status": "stopped"}))
    (root / "link").symlink_to(copied)
    project_in_root = root / "project"  # in the root, but not a run by the store's rule
    (project_in_root / "src").mkdir(parents=True)
    (project_in_root / "config.toml").write_text("mine")
    roots = [root]
    refusals = [(outside, "not a run of a runs root"), (project_in_root, "not a run of a runs root"),
                (renamed, "names run 'other'"), (root, "holds the runs root"),
                (tmp_path, "holds the runs root"), (root / "link", "symlink")]
    for path, why in refusals:
        with pytest.raises(RunError, match=why):
            actions.delete(path, roots)
    monkeypatch.chdir(run)
    for arg in (".", ".."):
        with pytest.raises(RunError):
            actions.delete(arg, roots)
    with pytest.raises(RunError, match="current directory"):
        actions.delete(run, roots)
    monkeypatch.chdir(tmp_path)
    proc = hold_lock(run)
    try:
        with pytest.raises(RunError, match=f"in use by process {proc.pid}"):
            actions.delete(run, roots)
    finally:
        proc.kill()
        proc.wait()
    assert all(p.exists() for p in (outside / "config.toml", renamed, copied, run, project_in_root / "src"))
    actions.delete(copied, roots)  # outside the roots, but its meta.json names it
    actions.delete(run, roots)
    assert not copied.exists() and not run.exists() and (root / "link").is_symlink()
    assert sorted(p.name for p in root.iterdir()) == ["link", "project"]  # no tombstone left


def test_remove_stale_temps(tmp_path):
    (tmp_path / "checkpoints" / ".step_00000004.dcp.tmp").mkdir(parents=True)
    for name in ("checkpoints/.step_00000008.pt.tmp-123", ".meta.json.tmp-9", "checkpoints/step_00000004.pt"):
        (tmp_path / name).write_text("x")
    assert sorted(layout.remove_stale_temps(tmp_path)) == [
        ".meta.json.tmp-9", "checkpoints/.step_00000004.dcp.tmp", "checkpoints/.step_00000008.pt.tmp-123"]
    assert [p.name for p in layout.checkpoints(tmp_path)] == ["step_00000004.pt"]


def test_a_deletion_killed_part_way_leaves_no_run_and_is_named(tmp_path):
    """SIGKILL in the middle of `runs rm`: the run is already out of the listing (renamed to a
    hidden tombstone under its lock), and `runs list` names what is left to remove by hand."""
    root = tmp_path / "runs"
    run = root / "big"
    (run / "checkpoints").mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"id": "big", "status": "completed"}))
    for i in range(30_000):  # enough files that rmtree takes a while
        (run / "checkpoints" / f"f{i}").write_bytes(b"")
    proc = subprocess.Popen([sys.executable, "-m", "gigagpt", "runs", "rm", "big", "--yes", "--runs-root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".big.deleting-") for p in root.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None, "rm finished before it could be killed"
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    (tomb,) = [p for p in root.iterdir() if p.name.startswith(".big.deleting-")]
    assert not run.exists() and actions.interrupted_deletions(root) == [tomb]
    listing = subprocess.run([sys.executable, "-m", "gigagpt", "runs", "list", "--runs-root", str(root), "--json"],
                             capture_output=True, text=True, check=True)
    assert json.loads(listing.stdout) == [] and f"{tomb}: what an interrupted `runs rm` left" in listing.stderr


def random_json(rng: random.Random, depth: int = 0):
    """Any JSON value a person, a disk or another tool could leave where a field belongs."""
    makers = [lambda: None, lambda: True, lambda: rng.randint(-2**70, 2**70),
              lambda: rng.choice([0, 1, -1, 10**400, 2**31, 2**63]),
              lambda: rng.choice([0.5, -1e308, 1e308, 1.7e9, float("nan"), float("inf")]),
              lambda: rng.choice(["", "x", "running", "\x1b[2J\u202e\ud800", "a" * 5000, "r1", "cpu"]),
              lambda: rng.choice([["a"], ["a b"], [1], []]), lambda: rng.choice(["completed", "stopped", "failed"])]
    if depth < 3:
        makers += [lambda: [random_json(rng, depth + 1) for _ in range(rng.randrange(3))],
                   lambda: {str(rng.randrange(5)): random_json(rng, depth + 1) for _ in range(rng.randrange(3))}]
    return rng.choice(makers)()


def test_any_meta_json_is_a_run_or_damaged_never_an_exception(tmp_path):
    """2,000 meta.json files of random values in every field: read_meta gives a Meta or RunError,
    and the summary, its table cells and its JSON never raise."""
    from gigagpt import listing
    from gigagpt.runs_cli import json_text
    from gigagpt.store import summary
    from gigagpt.store.meta import CHECKS

    rng = random.Random(12)
    run = tmp_path / "r1"
    run.mkdir()
    statuses = set()
    for _ in range(2000):
        meta = {k: random_json(rng) for k in CHECKS if rng.random() < rng.choice([0.05, 0.6])}
        if rng.random() < 0.7:
            meta["status"] = rng.choice(["completed", "running", "failed"])
        (run / "meta.json").write_text(json.dumps(meta))
        try:
            read_meta(run)
        except RunError:
            pass
        row = summary.run_summary(run)
        statuses.add(row["status"])
        listing.table([row])
        json.loads(json_text(row))  # strict JSON
        assert all(listing.printable(c) == c for c in (row["name"], listing.note(row)))
    assert {"damaged", "completed"} <= statuses
