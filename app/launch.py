"""What the launch screen needs, without Textual: presets with their plan, datasets, devices,
turning the form into a validated config, and starting / signalling trainer processes.

Never imports torch: devices are found by a probe subprocess (probe_devices).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from gigagpt import plan
from gigagpt.config import PRESETS_DIR, Config, ConfigError, load_config
from gigagpt.settings import cerebras_python, check_cluster, data_root
from gigagpt.store.actions import send_signal
from gigagpt.store.files import open_append
from gigagpt.store.layout import new_run_dir

# The form: config key -> label. Order is the form's order.
FORM_FIELDS = {
    "train.max_steps": "steps",
    "train.batch_size": "batch size",
    "train.grad_accum": "grad accum",
    "train.lr": "lr",
    "train.dtype": "dtype",
    "train.compile": "compile",
    "train.parallel": "parallel",
    "train.activation_checkpointing": "act. ckpt",
    "train.backend": "backend",
    "cerebras.target": "cerebras",
    "train.eval_interval": "eval every",
    "train.checkpoint_interval": "ckpt every",
}
PRESET_ORDER = ("tiny", "nano", "124m", "111m", "1p3b", "13b", "70b", "175b")

# Started by this process, so they can be reaped (and killed by the tests' teardown).
STARTED: list[subprocess.Popen] = []


# ---------------------------------------------------------------------------- presets

@dataclass
class Preset:
    name: str
    path: Path
    cfg: Config | None = None
    error: str | None = None  # why the file does not load; the row says so instead of numbers


def find_presets(extra_dirs: list[Path] = ()) -> list[Preset]:
    """Every *.toml in the repository's configs/ and in extra_dirs (a later dir wins a name clash)."""
    found: dict[str, Path] = {}
    for d in (PRESETS_DIR, *map(Path, extra_dirs)):
        for path in sorted(Path(d).glob("*.toml")):
            found[path.stem] = path
    presets = []
    for name, path in found.items():
        try:
            presets.append(Preset(name, path, load_config(path, check_data=False)))
        except ConfigError as e:
            presets.append(Preset(name, path, error=str(e)))
    rank = {n: i for i, n in enumerate(PRESET_ORDER)}
    presets.sort(key=lambda p: (rank.get(p.name, len(rank)), p.name))
    return presets


def form_values(cfg: Config) -> dict[str, str]:
    """The form's fields as text, from a config."""
    out = {}
    for key in FORM_FIELDS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def config_from_form(preset: Preset, dataset: str | None, values: dict[str, str]) -> tuple[Config, list[str]]:
    """The preset with the form applied and validated (dataset included): (config, --set list).

    Raises ConfigError with the core's own message (it names the key and the allowed values).
    """
    if preset.error:
        raise ConfigError(preset.error)
    if not dataset:
        raise ConfigError(f"no prepared dataset under {data_root()}: "
                          "prepare one with `gigagpt data prepare shakespeare`")
    overrides = [f"{key}={value.strip()}" for key, value in values.items()]
    overrides.append(f"data.dataset={dataset}")
    try:
        return load_config(preset.path, overrides, check_data=True), overrides
    except ConfigError as e:
        # The core's message, less where it came from: in the form, the user typed it here.
        message = str(e).removeprefix("--set: ").removeprefix(f"{preset.path}: ")
        raise ConfigError(message) from None


def cerebras_problem(cfg: Config) -> str | None:
    """Why a Cerebras launch of cfg cannot start here (no SDK environment, no cluster), or None.
    Pure checks of files and settings: no SDK import, nothing slow."""
    if cfg.train.backend != "cerebras":
        return None
    try:
        cerebras_python()
        check_cluster(cfg)
    except ConfigError as e:
        return str(e)
    return None


def check_csx(preset: Preset, overrides: list[str]) -> tuple[bool, str]:
    """`gigagpt check-csx` (trace and lower for CSX, no cluster; 5-40 s): (passed, its last line)."""
    cmd = [sys.executable, "-m", "gigagpt", "check-csx", str(preset.path.resolve())]
    for text in overrides:
        cmd += ["--set", text]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode == 0, lines[-1] if lines else f"check-csx exited {proc.returncode}"


def datasets() -> list[str]:
    """Prepared datasets under the data root (what `gigagpt data list` shows)."""
    from gigagpt.dataset import dataset_names

    return [n for n in dataset_names() if (data_root() / n / "train.bin").is_file()]


# ---------------------------------------------------------------------------- devices

@dataclass
class Device:
    label: str  # what the picker shows
    kind: str  # the trainer's --device: cpu, cuda, mps
    memory: int  # bytes a run may use on it
    env: dict = field(default_factory=dict)  # e.g. CUDA_VISIBLE_DEVICES for the 2nd GPU


PROBE = """
import json, torch
out = {"cuda": [], "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out["cuda"].append({"name": p.name, "memory": p.total_memory})
print(json.dumps(out))
"""


def cpu_device() -> Device:
    ram = psutil.virtual_memory().total
    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    return Device(f"cpu · {cores} cores · {plan.human_bytes(ram)}", "cpu", ram)


def probe_devices(timeout: float = 60) -> tuple[list[Device], str | None]:
    """CPU from psutil; CUDA GPUs and MPS from a torch subprocess. (devices, problem or None)."""
    devices = [cpu_device()]
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        found = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, OSError, json.JSONDecodeError, IndexError):
        found = None
    if found is None:
        return devices, "device probe failed (is torch installed?); only the CPU is offered"
    for i, gpu in enumerate(found.get("cuda", [])):
        devices.insert(i, Device(f"cuda:{i} · {gpu['name']} · {plan.human_bytes(gpu['memory'])}",
                                 "cuda", int(gpu["memory"]), {"CUDA_VISIBLE_DEVICES": str(i)}))
    if found.get("mps"):  # unified memory: the system's RAM
        devices.insert(0, Device(f"mps · {plan.human_bytes(devices[-1].memory)} unified", "mps",
                                 devices[-1].memory))
    return devices, None


def per_process_memory(device: Device, nproc: int) -> float:
    """Each GPU is its own; CPU (and MPS) processes share one machine's memory."""
    return device.memory if device.kind == "cuda" else device.memory / nproc


def plan_row(cfg: Config, device: Device, nproc: int = 1) -> dict:
    strategy = plan.choose_parallel(cfg, nproc, per_process_memory(device, nproc))
    mem = plan.memory_estimate(cfg, nproc, strategy)
    return {"params": plan.param_count(cfg.model), "flops": plan.flops_per_token(cfg.model), "memory": mem,
            "strategy": strategy, "fits": mem["total"] <= per_process_memory(device, nproc)}


def check_nproc(text: str, cfg: Config, devices: list[Device], device: Device) -> int:
    """The processes field: a whole number the batch splits across, and GPUs enough for it."""
    try:
        nproc = int(text.strip() or "1")
    except ValueError:
        raise ConfigError(f"processes = {text!r}: must be a whole number >= 1") from None
    if nproc < 1:
        raise ConfigError(f"processes = {nproc}: must be >= 1")
    gpus = sum(d.kind == "cuda" for d in devices)
    if device.kind == "cuda" and nproc > gpus:
        raise ConfigError(f"processes = {nproc}: one per GPU, and {gpus} GPU(s) were found")
    if not plan.valid_world(cfg, nproc):
        raise ConfigError(f"processes = {nproc}: train.batch_size = {cfg.train.batch_size} or "
                          f"train.grad_accum = {cfg.train.grad_accum} must be divisible by it")
    return nproc


# ---------------------------------------------------------------------------- processes

def launch(preset: Preset, overrides: list[str], name: str, device: Device, root: Path, nproc: int = 1) -> Path:
    """Start `gigagpt train` detached (own session, output to the run's train.log). Its run dir,
    made by the store's new_run_dir (an exclusive mkdir: two launches in the same second get two).
    With nproc > 1 it runs under torchrun, on the first nproc GPUs or as nproc CPU processes."""
    run_dir = new_run_dir(Path(root).resolve(), name or preset.name)
    cmd = ["train", str(preset.path.resolve()), "--run-dir", str(run_dir), "--device", device.kind]
    for text in overrides:
        cmd += ["--set", text]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    start(cmd, run_dir, device.env if nproc == 1 else {})
    return run_dir


def resume(run_dir: Path, max_steps: int) -> None:
    """Start `gigagpt resume RUN --set train.max_steps=N` detached, appending to its train.log."""
    start(["resume", str(Path(run_dir).resolve()), "--set", f"train.max_steps={max_steps}"], Path(run_dir))


def start(args: list[str], run_dir: Path, env: dict | None = None) -> subprocess.Popen:
    """`gigagpt ARGS` in its own session (it outlives the dashboard), output appended to train.log."""
    with open_append(run_dir / "train.log") as log:  # OSError for a FIFO, a symlink, a directory
        proc = subprocess.Popen([sys.executable, "-m", "gigagpt", *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **(env or {})})
    proc.run_dir = Path(run_dir)
    STARTED.append(proc)
    return proc


def reap() -> dict[Path, bool]:
    """Collect exited children (no zombies); {run dir: still alive} for the ones started here
    (the latest start of a run counts: a resumed run was started twice)."""
    return {proc.run_dir: proc.poll() is None for proc in STARTED}


def send(pid: int, sig: signal.Signals) -> None:
    send_signal(pid, sig)


# Short-lived helpers (`gigagpt sample`), kept apart from STARTED: they are not trainers.
HELPERS: list[subprocess.Popen] = []


def start_sample(run_dir: Path, prompt: str, temperature: float, top_k: int, max_new_tokens: int,
                 seed: int = 1337, num_samples: int = 1) -> subprocess.Popen:
    """`gigagpt sample` on the run's latest checkpoint: its stdout piped back to us as it prints,
    its stderr in proc.stderr, a temporary file."""
    cmd = [sys.executable, "-m", "gigagpt", "sample", str(Path(run_dir).resolve()), "--prompt", prompt,
           "--temperature", str(temperature), "--top-k", str(top_k), "--max-new-tokens", str(max_new_tokens),
           "--seed", str(seed), "--num-samples", str(num_samples)]
    err = tempfile.TemporaryFile()  # a file, not a pipe: a chatty stderr never blocks the sampler
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # its own group: cancel ends torch's workers too
    except OSError:
        err.close()
        raise
    proc.stderr = err  # read back once it has ended; whoever reads it closes both
    HELPERS.append(proc)
    return proc


def cli(args: list, timeout: float | None = None) -> tuple[bool, str]:
    """`gigagpt ARGS`, waited for (from a worker thread): (succeeded, its last line: stdout's on
    success, stderr's on failure, less the `gigagpt: error: ` prefix)."""
    proc = subprocess.Popen([sys.executable, "-m", "gigagpt", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True, text=True,
                            errors="replace")
    HELPERS.append(proc)  # killed by the tests' teardown should one hang
    try:
        said, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        cancel(proc)
        return False, f"gigagpt {' '.join(map(str, args[:2]))}: no answer in {timeout:g} s; stopped"
    finally:
        forget(proc)
    lines = (said if proc.returncode == 0 else err or said).strip().splitlines()
    return proc.returncode == 0, lines[-1].removeprefix("gigagpt: error: ") if lines else f"exit {proc.returncode}"


def export_hf(run_dir: Path, out: Path) -> tuple[bool, str]:
    """`gigagpt export-hf RUN --out DIR`, waited for: (succeeded, its last line)."""
    return cli(["export-hf", Path(run_dir).resolve(), "--out", out])


def forget(proc: subprocess.Popen) -> None:
    """A helper that has ended and been read: no longer ours to clean up."""
    if proc in HELPERS:
        HELPERS.remove(proc)


def cancel(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
