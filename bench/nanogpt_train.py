"""The strongest fair baseline: nanoGPT's own model (GPT, GPTConfig from a nanoGPT checkout's
model.py, `--nanogpt DIR`; `git clone https://github.com/karpathy/nanoGPT`: none of its code is in
this repository) on a gigagpt preset's shape, trained by nanoGPT's train.py loop with what an
expert changes for a CPU: bf16 autocast (train.py uses nullcontext on CPU), torch.compile, and
fused AdamW.

Fused AdamW: nanoGPT's configure_optimizers fuses only on CUDA. On this CPU the fused step of nano's
parameters took 63 ms against 296 ms for the default (a loop over parameters) and 336 ms for
foreach (medians of 7 interleaved rounds, the machine busy with other work), so the expert takes
it: configure_optimizers' own parameter groups (weight decay on the >= 2-D tensors only), rebuilt
with fused=True.

As a script (bench/end_to_end.py runs it against `gigagpt train`), one process, per step as
train.py does it: the lr from its warmup + cosine schedule, forward (logits, loss) under autocast,
the next batch (get_batch: np.memmap opened again, random windows), backward, clip_grad_norm_ to
train.grad_clip, optimizer step, zero_grad(set_to_none=True), then loss.item() and a line
(log_interval = 1; its MFU estimate from the 5th step). Evaluation and checkpoints follow `gigagpt
train`'s schedule instead of train.py's (which evaluates at step 0): after step s, the mean
validation loss over train.eval_steps batches when s % eval_interval == 0 or s is the last step,
and a checkpoint (model + optimizer state, torch.save into --out) when s % checkpoint_interval == 0
or s is the last step.

    .venv/bin/python bench/nanogpt_train.py --nanogpt DIR --out DIR [--config nano] [--set train.max_steps=24 ...]
"""
import argparse
import contextlib
import importlib.util
import io
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gigagpt.config import load_config
from gigagpt.dataset import dataset_info

REPO = Path(__file__).resolve().parent.parent
SKIP_NOTE = ("nanoGPT bf16+compile: skipped; pass --nanogpt DIR, a nanoGPT checkout "
             "(git clone https://github.com/karpathy/nanoGPT)")


def nanogpt_dir(arg: str | None) -> Path | None:
    """--nanogpt as given: None (the note printed: the caller skips the baseline), or a directory
    with nanoGPT's model.py; anything else is one line and exit 2."""
    if arg is None:
        print(SKIP_NOTE, flush=True)
        return None
    path = Path(arg).expanduser()
    if not (path / "model.py").is_file():
        print(f"--nanogpt {arg}: no model.py there, not a nanoGPT checkout "
              "(git clone https://github.com/karpathy/nanoGPT)", file=sys.stderr)
        raise SystemExit(2)
    return path


def load_nanogpt(path: Path):
    """nanoGPT's model.py as a module (registered before it runs: @dataclass looks itself up)."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", path / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build(path: Path, cfg):
    """nanoGPT's GPT at cfg's shape (vocab, bias and dropout as ours) and its optimizer, fused."""
    nano, m, t = load_nanogpt(path), cfg.model, cfg.train
    with contextlib.redirect_stdout(io.StringIO()):  # its parameter-count and optimizer-group prints
        model = nano.GPT(nano.GPTConfig(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, block_size=m.block_size,
                                        vocab_size=m.vocab_size, dropout=m.dropout, bias=m.bias))
        groups = model.configure_optimizers(t.weight_decay, t.lr, (t.beta1, t.beta2), "cpu").param_groups
    optimizer = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups],
                                  lr=t.lr, betas=(t.beta1, t.beta2), fused=True)
    return model, optimizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nanogpt", required=True, help="a nanoGPT checkout")
    ap.add_argument("--out", required=True, help="where the checkpoint goes")
    ap.add_argument("--config", default="nano", help="a preset in configs/: shape, batch, schedule, dataset")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as `gigagpt train --set`")
    args = ap.parse_args()
    cfg = load_config(REPO / "configs" / f"{args.config}.toml", args.set)
    m, t = cfg.model, cfg.train
    steps = t.max_steps
    data_dir, B, T, gas = dataset_info(cfg.data.dataset)["path"], t.batch_size, m.block_size, t.grad_accum
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1337)

    def get_batch(split):  # train.py's: the memmap made again each time (its memory-leak workaround)
        data = np.memmap(data_dir / f"{split}.bin", dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy((data[i:i + T]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + T]).astype(np.int64)) for i in ix])
        return x, y

    def get_lr(it):  # train.py's, decaying over this run's steps
        min_lr = t.lr * t.min_lr_ratio
        if it < t.warmup_steps:
            return t.lr * (it + 1) / (t.warmup_steps + 1)
        ratio = min(1.0, (it - t.warmup_steps) / max(1, steps - t.warmup_steps))
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (t.lr - min_lr)

    raw_model, optimizer = build(Path(args.nanogpt), cfg)
    model = torch.compile(raw_model)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16)

    @torch.no_grad()
    def estimate_loss():  # train.py's, on the validation split only, eval_steps batches (as ours)
        model.eval()
        losses = torch.zeros(t.eval_steps)
        for k in range(t.eval_steps):
            X, Y = get_batch("val")
            with ctx:
                logits, loss = model(X, Y)
            losses[k] = loss.item()
        model.train()
        return losses.mean()

    X, Y = get_batch("train")
    t0, running_mfu = time.time(), -1.0
    for it in range(steps):
        lr = get_lr(it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for _ in range(gas):
            with ctx:
                logits, loss = model(X, Y)
                loss = loss / gas
            X, Y = get_batch("train")
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t1 = time.time()
        dt, t0 = t1 - t0, t1
        lossf = loss.item() * gas
        if it >= 5:
            mfu = raw_model.estimate_mfu(B * gas, dt)
            running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
        print(f"iter {it}: loss {lossf:.4f}, time {dt * 1000:.2f}ms, mfu {running_mfu * 100:.2f}%", flush=True)
        step = it + 1
        if step % t.eval_interval == 0 or step == steps:
            print(f"step {step}: val loss {estimate_loss():.4f}", flush=True)
        if step % t.checkpoint_interval == 0 or step == steps:
            torch.save({"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "iter_num": step},
                       out / "ckpt.pt")


if __name__ == "__main__":
    main()
