"""Several processes through PyTorch's own engine: torchrun, DDP, FSDP2, distributed checkpoints.

Nothing here runs for a single process: train.py calls in only when WORLD_SIZE > 1.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from gigagpt.config import Config
from gigagpt.model import build_model, build_on_meta, init_parameter
from gigagpt.store.checkpoints import prune_checkpoints
from gigagpt.store.failed import writing


def setup() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, local_rank


def sum_across(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)  # SUM: gloo has no AVG
    return t.tolist()


def max_across(values: list[float], device) -> list[float]:
    t = torch.tensor([v if v is not None else -1 for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [None if v < 0 else int(v) for v in t.tolist()]


def gather(obj) -> list:
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def build_ddp(cfg: Config, device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(wrapped, raw): every rank builds the same seeded replica; DDP averages gradients."""
    raw = build_model(cfg.model, device)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(raw, device_ids=ids), raw


def build_fsdp(cfg: Config, device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Shard each block and the root on the meta device, then materialise only this rank's
    shards: the whole model never exists on one host. Each full parameter is initialised in
    turn (the largest one is the transient peak) exactly as a single process would."""
    # Imported here: FSDP2 and DTensor are not in torch 2.4, which the Cerebras SDK pins.
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import distribute_tensor

    model = build_on_meta(cfg.model)
    mp = None
    if cfg.train.dtype == "bfloat16":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    kw = {"mp_policy": mp} if mp else {}
    for block in model.blocks:
        fully_shard(block, **kw)
    fully_shard(model, **kw)
    model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            full = torch.empty(p.shape, device=device)
            init_parameter(name, full, cfg.model)
            p.to_local().copy_(distribute_tensor(full, p.device_mesh, p.placements).to_local())
    return model, model


def full_norm(norm) -> float:
    return (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()


def save_sharded(run_dir: Path, step: int, model, optimizer, extra: dict, rank: int, keep: int) -> Path:
    """A torch.distributed.checkpoint directory, made whole before it gets its final name. A failed
    write (a full disk) is WriteFailed on every rank: dcp.save gathers each rank's error."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from gigagpt.checkpoint import save_file

    ckpt_dir = run_dir / "checkpoints"
    final = ckpt_dir / f"step_{step:08d}.dcp"
    tmp = ckpt_dir / f".step_{step:08d}.dcp.tmp"
    with writing(f"checkpoints/{final.name}"):
        if rank == 0:
            ckpt_dir.mkdir(exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        dist.barrier()
        msd, osd = get_state_dict(model, optimizer)
        dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(tmp))
        if rank == 0:
            save_file(tmp / "extra.pt", extra)
        dist.barrier()
        if rank == 0:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    if rank == 0:
        prune_checkpoints(run_dir, keep)
    dist.barrier()
    return final


def load_sharded(path: Path, model, optimizer) -> None:
    """Restore a .dcp checkpoint's weights and optimizer state into an FSDP model and optimizer
    (its extra.pt is read by gigagpt.checkpoint), through gigagpt.safe_dcp: nothing in it runs."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from gigagpt import safe_dcp

    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optimizer": osd}
    safe_dcp.load(state, path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def load_full_model_state(path: Path, model: torch.nn.Module) -> None:
    """Weights of a .dcp checkpoint into an ordinary (unsharded) model, in one process; Unloadable
    when it is refused as unsafe, RuntimeError when it does not load otherwise."""
    from gigagpt import safe_dcp

    sd = model.state_dict()
    safe_dcp.load({"model": sd}, path, no_dist=True)
    model.load_state_dict(sd)
