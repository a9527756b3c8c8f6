"""The torch trainer's checkpoints: written atomically, read only with torch.load(weights_only=True),
and for a resume the newest one that loads (docs/run-format.md, "Checkpoints")."""
from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path

import torch

from gigagpt import dist
from gigagpt.config import Config, to_dict
from gigagpt.store.checkpoints import Unloadable, newest_loadable, prune_checkpoints
from gigagpt.store.failed import ErrorRecorder, writing
from gigagpt.store.files import RunError, atomic_write, os_reason

TRAIN_KEYS = ("model", "optimizer", "step", "tokens", "best_val", "config", "rng")
EXTRA_KEYS = ("step", "tokens", "best_val", "config", "rng")  # a .dcp's extra.pt: no weights


def save_file(path: Path, state: dict) -> None:
    """torch.save through a temp file and a rename. A failed write (a full disk) is WriteFailed
    with the OS's reason: torch.save itself only says 'unexpected pos'."""
    def write(f):
        rec = ErrorRecorder(f)
        try:
            torch.save(state, rec)
        except Exception:
            if rec.error:
                raise rec.error from None
            raise

    atomic_write(path, write)


def save(run_dir: Path, state: dict, keep: int) -> Path:
    path = run_dir / "checkpoints" / f"step_{state['step']:08d}.pt"
    with writing(f"checkpoints/{path.name}"):
        path.parent.mkdir(exist_ok=True)
        save_file(path, state)
    prune_checkpoints(run_dir, keep)
    return path


def why(e: BaseException) -> str:
    """One line saying why a checkpoint did not load."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if isinstance(e, pickle.UnpicklingError) and lines and lines[0].startswith("Weights only load failed"):
        boilerplate = ("Check the documentation", "Re-running", "Please file an issue", "In PyTorch")
        detail = next((x for x in lines[1:] if not x.startswith(boilerplate)), "")
        return "refused by torch.load(weights_only=True)" + (f" ({detail[:200]})" if detail else "")
    return f"unreadable ({brief(e)})"


def brief(e: BaseException) -> str:
    """`Type: the first sentence of its message`."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0].split(". ")[0][:200] if lines else ""
    return f"{type(e).__name__}{': ' + text if text else ''}"


def load(path: Path, keys=TRAIN_KEYS) -> dict:
    """A checkpoint file's state; Unloadable (one line) for a damaged, truncated or unsafe file."""
    try:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index is at the end
            raise Unloadable("unreadable (not a zip archive as torch.save writes: truncated or corrupt)")
    except OSError as e:
        raise Unloadable(f"unreadable ({os_reason(e)})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes torch raise
        raise Unloadable(why(e)) from None
    if not isinstance(state, dict):
        raise Unloadable(f"not a gigagpt checkpoint (a {type(state).__name__}, not a dict)")
    missing = [k for k in keys if k not in state]
    if missing:
        raise Unloadable(f"not a gigagpt checkpoint (no {', '.join(missing)})")
    if not isinstance(state["config"], dict) or not isinstance(state["config"].get("model"), dict):
        raise Unloadable("not a gigagpt checkpoint (no [model] in its config)")
    return state


def restore(run_dir: Path, cfg, parallel: str, model, raw_model, optimizer, data_gen, device, rank: int, world: int):
    """Load the newest checkpoint that loads into the model, optimizer and RNGs: (path, state,
    skipped) as store.checkpoints.newest_loadable gives them. Every rank tries the same checkpoints in
    the same order and they agree on each (one all-reduce), so a file one rank cannot read is
    skipped by all. A checkpoint this trainer must not use (another backend's, another [model])
    is a RunError, not skipped."""
    def attempt(path: Path) -> dict:
        state, unloadable, refused = None, None, None
        try:
            state = _load_into(path, cfg, parallel, model, raw_model, optimizer, data_gen, device, rank)
        except Unloadable as e:
            unloadable = e
        except RunError as e:
            refused = e
        if world > 1:
            n_unloadable, n_refused = dist.sum_across([float(unloadable is not None), float(refused is not None)], device)
            if n_refused and not refused:
                refused = RunError(f"{path.name}: refused by another process")
            if n_unloadable and not unloadable:
                unloadable = Unloadable("another process could not read it")
        if refused:
            raise refused
        if unloadable:
            raise unloadable
        return state

    return newest_loadable(run_dir, attempt)


def _load_into(path, cfg, parallel, model, raw_model, optimizer, data_gen, device, rank) -> dict:
    if path.suffix == ".mdl":
        raise RunError(f"{path.name}: a Cerebras checkpoint (cstorch.save); it resumes with "
                       "train.backend = \"cerebras\" only")
    if (path.suffix == ".dcp") != (parallel == "fsdp"):
        raise RunError(f"{path.name}: a {'sharded' if path.suffix == '.dcp' else 'whole'} checkpoint resumes "
                       f"{'with parallel = fsdp under torchrun' if path.suffix == '.dcp' else 'without FSDP'} "
                       f"(this process group: {parallel})")
    state = load(path / "extra.pt", EXTRA_KEYS) if path.suffix == ".dcp" else load(path)
    bad = _bad_counts(state)
    if bad:
        raise Unloadable(f"not a gigagpt checkpoint ({bad})")
    if {**to_dict(Config())["model"], **state["config"]["model"]} != to_dict(cfg)["model"]:  # a key added since: its default
        raise RunError(f"{path.name}: the [model] section differs from the checkpoint's; "
                       "a resumed run can change [train] keys only")
    try:
        if path.suffix == ".dcp":
            dist.load_sharded(path, model, optimizer)
        else:
            raw_model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        rngs = state["rng"]["torch"]  # one CPU generator state per rank that wrote it
        torch.set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
        if device.type == "cuda" and state["rng"].get("cuda"):
            cuda_rngs = state["rng"]["cuda"]
            torch.cuda.set_rng_state(cuda_rngs[rank] if rank < len(cuda_rngs) else cuda_rngs[0], device)
        data_gen.set_state(state["rng"]["data"])
    except (KeyboardInterrupt, SystemExit, Unloadable):  # Unloadable: a .dcp refused as unsafe says so itself
        raise
    except BaseException as e:  # noqa: BLE001 - a sharded load wraps errors in a BaseException
        raise Unloadable(f"does not fit this model and optimizer ({brief(e)})") from None
    return state


def _bad_counts(state: dict) -> str | None:
    """What is wrong with the step, token count or carried logging interval, or None."""
    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not (count(state["step"]) and count(state["tokens"])):
        return f"step = {state['step']!r}, tokens = {state['tokens']!r}"
    train = state["config"].get("train") if isinstance(state.get("config"), dict) else None
    max_steps = train.get("max_steps") if isinstance(train, dict) else None
    if not count(max_steps) or state["step"] > max_steps:  # a trainer never checkpoints past its target
        return f"step = {state['step']!r} with max_steps = {max_steps!r}"
    log_steps, log_sum = state.get("log_steps", 0), state.get("log_loss_sum", 0.0)
    if not (count(log_steps) and log_steps <= state["step"] and isinstance(log_sum, float) and math.isfinite(log_sum)):
        return f"log_steps = {log_steps!r}, log_loss_sum = {log_sum!r}"
    return None
