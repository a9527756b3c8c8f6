"""The Cerebras backend through the real Cerebras PyTorch SDK (cerebras-pytorch 2.10, its own venv).

Nothing is mocked but the cluster, which is simply absent: training runs on the SDK's CPU target,
check-csx lowers for CSX with validate_only (which needs no cluster), and the CSX training path is
exercised up to the point where it would connect (the missing-cluster error). The tests start the
SDK's interpreter as subprocesses, through `gigagpt`, as users do. They need the environment that
scripts/cerebras-env.sh builds (./run.sh test builds it when missing).
"""
import json
import os
import subprocess
import time

import pytest
import tomllib
from conftest import REPO, gigagpt

from gigagpt.config import ConfigError, from_dict, load_config, to_toml
from gigagpt.settings import CEREBRAS_ENV
from gigagpt.store.layout import checkpoints
from gigagpt.store.metrics import load_metrics

needs_sdk = pytest.mark.skipif(not (CEREBRAS_ENV / "bin" / "python").exists(),
                               reason="no Cerebras SDK environment: run scripts/cerebras-env.sh")
FAST = ["--set", "train.log_interval=1", "--set", "train.warmup_steps=2", "--set", "train.eval_steps=2",
        "--set", "model.block_size=32", "--set", "train.dtype=float32", "--set", "train.lr=3e-3"]


@pytest.fixture(autouse=True)
def no_settings(tmp_path, monkeypatch):
    """An empty settings file: the user's gigagpt.toml (their cluster) stays out of the tests."""
    path = tmp_path / "gigagpt.toml"
    path.write_text("")
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(path))
    return path


def test_config_keys_settings_defaults_and_lists_round_trip(no_settings):
    no_settings.write_text('[cerebras]\nmgmt_address = "cluster.example:9000"\nmount_dirs = ["/data"]\n')
    cfg = load_config(REPO / "configs" / "111m.toml", ["train.backend=cerebras", "cerebras.python_paths=/a,/b"],
                      check_data=False)
    c = cfg.cerebras
    assert (c.mgmt_address, c.mount_dirs, c.python_paths, c.target) == ("cluster.example:9000", ["/data"],
                                                                         ["/a", "/b"], "CSX")
    assert from_dict(tomllib.loads(to_toml(cfg))) == cfg
    for bad, message in (("train.backend=tpu", "train.backend"), ("cerebras.target=GPU", "cerebras.target"),
                         ("cerebras.mgmt_address=nohost", "host:port"), ("cerebras.num_systems=0", "num_systems")):
        with pytest.raises(ConfigError, match=message):
            load_config(REPO / "configs" / "tiny.toml", [bad], check_data=False)
    with pytest.raises(ConfigError, match="divisible by cerebras.num_systems = 7"):
        load_config(REPO / "configs" / "tiny.toml", ["train.backend=cerebras", "cerebras.num_systems=7"],
                    check_data=False)
    no_settings.write_text("[python]\ncerebras = '/nowhere/bin/python'\n")
    proc = gigagpt("check-csx", "tiny", check=False)
    assert proc.returncode == 2 and "/nowhere/bin/python" in proc.stderr and "gigagpt env cerebras" in proc.stderr


def test_missing_cluster_is_one_clear_message_before_any_work(dataset, tmp_path):
    run = tmp_path / "csx"
    t0 = time.time()
    proc = gigagpt("train", "tiny", "--backend", "cerebras", "--run-dir", run, "--set", f"data.dataset={dataset}",
                   check=False)
    assert proc.returncode == 2 and time.time() - t0 < 10
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gigagpt: error: ") and "no Cerebras cluster configured: cerebras.mgmt_address is not set" in line
    assert "/opt/cerebras/config_v2" in line and "Traceback" not in proc.stdout + proc.stderr
    assert not run.exists()
    # The same check guards the trainer itself when started directly in the SDK's environment.
    if (CEREBRAS_ENV / "bin" / "python").exists():
        proc = subprocess.run([CEREBRAS_ENV / "bin" / "python", "-m", "gigagpt.cerebras", "train",
                               REPO / "configs" / "tiny.toml", "--run-dir", run, "--set", f"data.dataset={dataset}"],
                              capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 2 and "cerebras.mgmt_address is not set" in proc.stderr
        assert "Traceback" not in proc.stderr and not run.exists()


@needs_sdk
def test_tiny_trains_on_the_sdk_cpu_target_and_resumes(dataset, tmp_path):
    run = tmp_path / "cpu"
    args = ["--set", f"data.dataset={dataset}", *FAST, "--set", "cerebras.target=CPU", "--set", "train.max_steps=8",
            "--set", "train.eval_interval=4", "--set", "train.checkpoint_interval=2", "--set", "train.keep_checkpoints=2"]
    proc = gigagpt("train", "tiny", "--backend", "cerebras", "--run-dir", run, *args, "--stop-at", "5")
    assert "step 5/8" in proc.stdout and "stopped" in proc.stdout
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "stopped" and meta["step"] == 5 and meta["device"] == "cerebras-cpu"
    assert meta["versions"]["cerebras_pytorch"] == "2.10.0" and meta["versions"]["torch"].startswith("2.4.0")
    assert [p.name for p in checkpoints(run)] == ["step_00000004.mdl", "step_00000005.mdl"]
    assert (run / "checkpoints" / "step_00000005.mdl").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # cstorch.save

    proc = gigagpt("resume", run)
    assert "resumed from step_00000005.mdl at step 5" in proc.stdout
    records = load_metrics(run)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))
    for key in ("loss", "lr", "grad_norm", "tokens", "tok_s", "mfu", "step_time", "rss", "mem_alloc", "mem_peak"):
        assert key in train[0], key
    assert train[-1]["tokens"] == 8 * 8 * 32 and all(r["tok_s"] > 0 for r in train)
    assert sum(r["loss"] for r in train[-3:]) < sum(r["loss"] for r in train[:3]) - 0.1  # it learns
    lrs = [r["lr"] for r in train]  # warmup 2 steps to 3e-3, cosine to 3e-4 at step 8 (gigagpt.train.lr_at)
    assert lrs[0] == pytest.approx(1.5e-3) and lrs[1] == pytest.approx(3e-3) and lrs[-1] == pytest.approx(3e-4)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [4, 8]
    assert [r["step"] for r in records if r["kind"] == "checkpoint"] == [2, 4, 5, 6, 8]
    events = [r["event"] for r in records if r["kind"] == "event"]
    assert events == ["start", "stopped", "resume", "start", "completed"]
    assert [p.name for p in checkpoints(run)] == ["step_00000006.mdl", "step_00000008.mdl"]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["step"] == 8 and meta["world_size"] == 1
    assert 'backend = "cerebras"' in (run / "config.toml").read_text()
    assert "step 8/8" in (run / "train.log").read_text()


@needs_sdk
@pytest.mark.parametrize("preset", ["tiny", "111m", "175b"])
def test_check_csx_lowers_presets_without_a_cluster(preset):
    """validate_only: traced and lowered to Cerebras IR, weights never materialised (175b: ~1.5 GB)."""
    proc = gigagpt("check-csx", preset, timeout=300)
    assert f"check-csx {preset}: OK: lowered for CSX" in proc.stdout, proc.stdout + proc.stderr
    assert "MB of Cerebras IR" in proc.stdout


@needs_sdk
def test_check_csx_names_the_op_the_compiler_rejects(tmp_path):
    """A model with torch.triu on a bool mask (the Cerebras compiler rejects bool subtraction)."""
    script = tmp_path / "bad.py"
    script.write_text(
        "import sys, torch\n"
        "from gigagpt import cerebras, model\n"
        "from gigagpt.config import load_config\n"
        "forward = model.Attention.forward\n"
        "def triu_mask(self, x):\n"
        "    torch.triu(torch.ones(4, 4, dtype=torch.bool, device=x.device), 1)\n"
        "    return forward(self, x)\n"
        "model.Attention.forward = triu_mask\n"
        "cfg = load_config(sys.argv[1], check_data=False)\n"
        "sys.exit(cerebras.check_csx(cerebras.on_cerebras(cfg), 'tiny'))\n")
    proc = subprocess.run([CEREBRAS_ENV / "bin" / "python", script, REPO / "configs" / "tiny.toml"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 1
    assert "check-csx tiny: FAILED" in proc.stdout and "with a bool tensor is not supported" in proc.stdout


@needs_sdk
def test_dashboard_offers_check_csx_and_refuses_a_launch_without_a_cluster(dataset, tmp_path):
    """The launch screen with backend cerebras: launching on CSX with no cluster is refused with the
    missing setting named; ctrl+t runs the real check-csx (the SDK lowers tiny for CSX)."""
    import asyncio

    from textual.widgets import Select, Static

    from app.main import DashApp

    async def go():
        app = DashApp(tmp_path / "runs", probe=False, refresh=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            home = app.screen
            home.query_one("#dataset", Select).value = "walk"
            home.query_one("#f-train-backend", Select).value = "cerebras"
            await pilot.pause()
            await pilot.press("ctrl+r")
            await pilot.pause()
            error = str(home.query_one("#form-error", Static).content)
            assert "cerebras.mgmt_address" in error and not (tmp_path / "runs").exists()
            await pilot.press("ctrl+t")
            deadline = time.monotonic() + 180
            while "OK: lowered for CSX" not in str(home.query_one("#form-error", Static).content):
                assert time.monotonic() < deadline, str(home.query_one("#form-error", Static).content)
                await pilot.pause(0.5)
            assert home.csx_passed

    asyncio.run(go())
