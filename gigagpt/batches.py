"""The token windows a run reads: which windows each step draws (the same order at any world size
and on either backend), each rank's share, and reading them from a prepared dataset's memmap.

The data loaders at the end run the same draws for the Cerebras SDK (on its streaming workers on a
cluster); they import the SDK only when called.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gigagpt.config import Config, from_dict
from gigagpt.store.files import RunError

CPU = torch.device("cpu")


def open_split(dataset_dir: Path, split: str) -> np.memmap:
    return np.memmap(Path(dataset_dir) / f"{split}.bin", dtype=np.uint16, mode="r")


def draw_windows(data: np.memmap, cfg: Config, n_micro: int, gen: torch.Generator) -> torch.Tensor:
    """Start offsets of one optimizer step's windows, shape (n_micro, batch_size), for the whole
    job. Every rank draws the same offsets from its own identically seeded generator (whose
    state is checkpointed) and reads only its share: the data order is the same at any scale."""
    high = len(data) - cfg.model.block_size
    return torch.randint(high, (n_micro, cfg.train.batch_size), generator=gen)


def my_share(ix: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's part of a (micro-steps, batch) grid of windows: a slice of each micro-batch
    when batch_size divides evenly, else whole micro-steps (gradient accumulation split), else
    (only for evaluation) all of it: the mean over ranks is then still the global mean."""
    n_micro, batch = ix.shape
    if batch % world == 0:
        return ix[:, rank * batch // world:(rank + 1) * batch // world]
    if n_micro % world == 0:
        return ix[rank * n_micro // world:(rank + 1) * n_micro // world]
    return ix


def load_windows(data: np.memmap, starts: torch.Tensor, block_size: int, device, vocab_size: int):
    """Inputs and targets of the windows at `starts`. Their token ids are checked: a dataset made
    with another tokenizer would otherwise index past the embedding deep inside the model."""
    windows = np.stack([data[i:i + block_size + 1] for i in starts.tolist()])
    if windows.size and windows.max() >= vocab_size:
        at = int(np.argmax(windows.max(axis=1) >= vocab_size))
        raise RunError(f"{data.filename}: token id {int(windows[at].max())} (in the window at token {starts[at]}) is "
                       f">= model.vocab_size = {vocab_size}: the dataset was made with another tokenizer")
    w = torch.from_numpy(windows.astype(np.int64))
    x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# ---------------------------------------------------------------------------- the Cerebras SDK's data loaders

def train_batches(cfg_dict: dict, dataset: str, start: int, steps: int):
    """The torch trainer's windows for steps start+1 .. start+steps: one generator seeded with
    train.seed, fast-forwarded past `start` steps, so a resumed run continues the same data order.
    On a cluster each streaming worker yields its system's share of every batch."""
    import cerebras.pytorch.distributed as cdist

    cfg = from_dict(cfg_dict)
    t, data = cfg.train, open_split(Path(dataset), "train")
    gen = torch.Generator().manual_seed(t.seed)
    for _ in range(start):
        draw_windows(data, cfg, t.grad_accum, gen)
    for _ in range(steps):
        starts = draw_windows(data, cfg, t.grad_accum, gen).reshape(-1)
        if cdist.is_streamer():
            n, r = cdist.num_streamers(), cdist.get_streaming_rank()
            starts = starts[r * len(starts) // n:(r + 1) * len(starts) // n]
        yield load_windows(data, starts, cfg.model.block_size, CPU, cfg.model.vocab_size)


def eval_batches(cfg_dict: dict, dataset: str):
    """The torch trainer's fixed validation batches (eval_steps of them, seed + 1)."""
    cfg = from_dict(cfg_dict)
    data = open_split(Path(dataset), "val")
    gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    for starts in draw_windows(data, cfg, cfg.train.eval_steps, gen):
        yield load_windows(data, starts, cfg.model.block_size, CPU, cfg.model.vocab_size)


def zero_batches(cfg_dict: dict):
    """check-csx: any tokens do for lowering; only the shapes matter."""
    cfg = from_dict(cfg_dict)
    x = torch.zeros(cfg.train.batch_size * cfg.train.grad_accum, cfg.model.block_size, dtype=torch.int64)
    while True:
        yield x, x
