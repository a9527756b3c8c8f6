"""Datasets and settings that come from elsewhere: one line naming the file, nothing created,
and a run that meets a bad token ends `failed` with the reason (issue 13)."""
import json
import os

import numpy as np
from conftest import TINY, gigagpt, write_dataset

from gigagpt.store.meta import read_meta


def train(dataset, *extra, **kw):
    return gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *TINY, "--set", "train.max_steps=4",
                   *extra, check=False, **kw)


def test_token_ids_past_the_vocabulary_fail_the_run_with_the_file(tmp_path):
    ds = write_dataset(tmp_path / "foreign")
    tokens = np.fromfile(ds / "train.bin", dtype=np.uint16)
    tokens[::7] = 60000  # a 65k-vocabulary tokenizer's ids in a GPT-2 model
    tokens.tofile(ds / "train.bin")
    proc = train(ds, "--run-dir", tmp_path / "run")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    meta = read_meta(tmp_path / "run")
    assert meta.status == "failed"
    assert "train.bin: token id 60000" in meta.failure and "model.vocab_size = 50257" in meta.failure


def test_a_torn_bin_or_bad_meta_is_one_line_and_no_run(tmp_path):
    cases = {
        "odd": lambda ds: open(ds / "val.bin", "ab").write(b"\0"),
        "meta-not-json": lambda ds: (ds / "meta.json").write_text("{nope"),
        "meta-list": lambda ds: (ds / "meta.json").write_text("[1, 2]"),
        "meta-vocab": lambda ds: (ds / "meta.json").write_text(json.dumps({"vocab_size": "50257"})),
        "meta-huge": lambda ds: (ds / "meta.json").write_text(json.dumps({"vocab_size": 10**30})),
        "meta-fifo": lambda ds: ((ds / "meta.json").unlink(), os.mkfifo(ds / "meta.json")),
        "meta-big": lambda ds: (ds / "meta.json").write_text(" " * (2 << 20)),
    }
    for name, damage in cases.items():
        ds = write_dataset(tmp_path / name, n_train=2000, n_val=500)
        damage(ds)
        proc = train(ds, "--runs-root", tmp_path / "runs", timeout=60)
        assert proc.returncode == 2, (name, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("gigagpt: error: ") and str(ds) in line, (name, line)
        assert not (tmp_path / "runs").exists(), name


def test_empty_environment_paths_are_unset(tmp_path, dataset):
    """GIGAGPT_RUNS= (empty) is the default ./runs, not the current directory."""
    (tmp_path / "runs").mkdir()
    env = {**os.environ, "GIGAGPT_RUNS": "", "GIGAGPT_DATA": ""}
    proc = train(dataset, "--set", "train.max_steps=2", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["runs"] and len(list((tmp_path / "runs").iterdir())) == 1
    proc = gigagpt("env", cwd=tmp_path, env=env)
    assert "runs root          runs (default)" in proc.stdout and "data root          data (default)" in proc.stdout


def test_settings_file_in_the_current_directory_is_shown_and_its_python_announced(tmp_path, dataset):
    marker = tmp_path / "ran"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    (tmp_path / "gigagpt.toml").write_text(f'[python]\ncerebras = "{fake}"\n')
    env = {k: v for k, v in os.environ.items() if k != "GIGAGPT_SETTINGS"}
    proc = gigagpt("env", cwd=tmp_path, env=env)
    assert "settings file      gigagpt.toml (in the current directory)" in proc.stdout
    assert f"Cerebras SDK       {fake} (settings [python] cerebras)" in proc.stdout
    proc = gigagpt("train", "tiny", "--backend", "cerebras", "--set", f"data.dataset={dataset}",
                   "--set", "cerebras.target=CPU", "--runs-root", tmp_path / "runs", cwd=tmp_path, env=env, check=False)
    first = proc.stderr.splitlines()[0]
    assert first == f"gigagpt: running the Cerebras SDK's Python {fake} (named in gigagpt.toml: [python] cerebras)"
    assert marker.exists()  # announced first, then run: the user asked for it in their settings


def test_settings_and_sizes_from_the_review_are_one_line(tmp_path, dataset):
    env = {**os.environ, "GIGAGPT_SETTINGS": str(tmp_path / "s.toml")}
    for text, needle in [('[python]\ncerebras = 123\n', "[python] cerebras = 123: must be a string"),
                         ('[python]\ncerebras = "~nouser-xyz/bin/python"\n', "[python] cerebras = '~nouser-xyz/bin/python'"),
                         ('[python]\nsdk = "/x"\n', "[python] sdk: unknown"),
                         ('[runs]\nroots = ["a\\u0000b"]\n', "[runs] roots")]:
        (tmp_path / "s.toml").write_text(text)
        for args in (["env"], ["runs", "list"]) if "[runs]" in text else (["env"], ["check-csx", "tiny"]):
            proc = gigagpt(*args, env=env, check=False)
            lines = proc.stderr.strip().splitlines() + (proc.stdout.strip().splitlines() if args == ["env"] else [])
            assert needle in proc.stderr + proc.stdout and "Traceback" not in proc.stderr, (text, args, proc.stderr)
            assert proc.returncode in ((0, 2) if args != ["check-csx", "tiny"] else (2,)), (text, args, lines)
    for key, value in [("train.eval_steps", "1000000000000"), ("train.grad_accum", "100000000"),
                       ("train.weight_decay", "1e300")]:
        proc = train(dataset, "--set", f"{key}={value}", "--runs-root", tmp_path / "runs")
        assert proc.returncode == 2 and key in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_tilde_in_an_environment_path(tmp_path, dataset):
    """`~` in $GIGAGPT_RUNS is the home directory (a quoted "~/runs" reaches us as is); a ~user that
    does not exist is one line naming the variable and its value, exit 2, nothing created (no
    directory named `~no-such-user...`): in the CLI and in the dashboard, before it takes the screen."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "GIGAGPT_RUNS": "~/myruns"}
    proc = gigagpt("env", cwd=tmp_path, env=env)
    assert f"runs root          {home / 'myruns'} ($GIGAGPT_RUNS)" in proc.stdout
    gigagpt("queue", "add", "tiny", "--set", f"data.dataset={dataset}", "--name", "q", cwd=tmp_path, env=env)
    assert [p.name.split("-")[0] for p in (home / "myruns").iterdir() if not p.name.startswith(".")] == ["q"]
    bad = "~no-such-user-gigagpt/runs"
    said = f"$GIGAGPT_RUNS = '{bad}': cannot expand ~no-such-user-gigagpt: no such user; use a full path"
    for args in (("runs", "list"), ("queue", "add", "tiny", "--set", f"data.dataset={dataset}"), ("dash",)):
        proc = gigagpt(*args, cwd=tmp_path, env={**env, "GIGAGPT_RUNS": bad}, check=False, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        prefix = "gigagpt dash: error: " if args == ("dash",) else "gigagpt: error: "
        assert line == prefix + said, (args, line)
    proc = gigagpt("dash", cwd=tmp_path, env={**env, "GIGAGPT_DATA": "~no-such-user-gigagpt"}, check=False, timeout=60)
    assert proc.returncode == 2 and "$GIGAGPT_DATA = '~no-such-user-gigagpt'" in proc.stderr
    # a bad cache path is refused before `train` makes its run directory, not by the run failing
    proc = gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", cwd=tmp_path,
                   env={**env, "GIGAGPT_CACHE": "~no-such-user-gigagpt"}, check=False, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "gigagpt: error: $GIGAGPT_CACHE = '~no-such-user-gigagpt': cannot expand ~no-such-user-gigagpt: no such user; "
        "use a full path"]
    assert len([p for p in (home / "myruns").iterdir() if not p.name.startswith(".")]) == 1  # the queued run alone
    # a command given its own root does not need the variable
    assert gigagpt("runs", "list", "--runs-root", home / "myruns", cwd=tmp_path, env={**env, "GIGAGPT_RUNS": bad}).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_the_longest_names_accepted_make_runs_that_read_and_resume(tmp_path, dataset):
    """--name and --run-dir may make a run id of 128 characters: either run is what it is (not
    `damaged` by a shorter limit in meta.json) and resumes."""
    runs = tmp_path / "runs"
    for extra in (("--name", "M" * 112, "--runs-root", runs), ("--run-dir", runs / ("L" * 128))):
        proc = train(dataset, "--stop-at", "2", *extra)
        assert proc.returncode == 0, proc.stderr
    rows = json.loads(gigagpt("runs", "list", "--runs-root", runs, "--json").stdout)
    assert sorted((len(r["id"]), r["status"]) for r in rows) == [(128, "stopped"), (128, "stopped")]
    for row in rows:
        proc = gigagpt("resume", row["path"], check=False)
        assert proc.returncode == 0, proc.stderr
        assert read_meta(row["path"]).status == "completed"


def test_no_home_directory(monkeypatch, tmp_path, dataset, capsys):
    """With no $HOME and no passwd entry (Path.home() raises), commands that need no home work and
    train says what to set, in one line, before a run exists; a ~ path a user typed is then not found."""
    from pathlib import Path

    from gigagpt import cli

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    for var in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "GIGAGPT_CACHE", "GIGAGPT_SETTINGS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["plan", "tiny"]) == 0
    assert cli.main(["runs", "list", "--runs-root", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    assert cli.main(["train", "tiny", "--set", f"data.dataset={dataset}", "--runs-root", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "gigagpt: error: no home directory for the cache (no $HOME, no passwd entry): set GIGAGPT_CACHE"]
    assert cli.main(["data", "prepare", "~/book.txt"]) == 2
    assert "~/book.txt: no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
