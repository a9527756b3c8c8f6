"""The training loop: one process, one device; writes the run directory (docs/run-format.md)."""
from __future__ import annotations

import math
import platform
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import psutil
import torch

import gigagpt
from gigagpt import checkpoint, dist, guard
from gigagpt.batches import draw_windows, load_windows, my_share, open_split
from gigagpt.config import Config, to_dict, to_toml
from gigagpt.dataset import dataset_info
from gigagpt.device import cpu_peak_flops, device_memory, device_memory_total, peak_info, pick_device, reuse_freed_memory
from gigagpt.model import build_model
from gigagpt.plan import check_world, choose_parallel, flops_per_token, param_count, tokens_per_step
from gigagpt.store.checkpoints import no_checkpoint
from gigagpt.store.files import RunError
from gigagpt.store.writer import RunWriter
from gigagpt.torchrun import say_once

# ---------------------------------------------------------------------------- optimisation

def lr_at(step: int, t) -> float:
    """Linear warmup to lr over warmup_steps, then cosine decay to min_lr_ratio*lr at the last step."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    span = max(1, t.max_steps - 1 - t.warmup_steps)
    progress = min(1.0, (step - t.warmup_steps) / span)
    min_lr = t.min_lr_ratio * t.lr
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (t.lr - min_lr)


def make_optimizer(model: torch.nn.Module, t, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    kwargs = dict(lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps)
    if device.type in ("cuda", "cpu"):  # one fused kernel for all parameters
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(groups, foreach=device.type != "cpu", **kwargs)


def autocast_for(device: torch.device, dtype: str):
    if dtype == "float32" or device.type not in ("cpu", "cuda", "mps"):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(model, data, cfg: Config, device, ctx, rank: int = 0, world: int = 1) -> float:
    """Mean loss on the same eval_steps validation batches every time (a fixed-seed generator)."""
    model.eval()
    gen = torch.Generator().manual_seed(cfg.train.seed + 1)
    share = my_share(draw_windows(data, cfg, cfg.train.eval_steps, gen), rank, world)
    total = 0.0
    for starts in share:
        x, y = load_windows(data, starts, cfg.model.block_size, device, cfg.model.vocab_size)
        with ctx:
            total += model(x, y).item()
    model.train()
    mean = total / len(share)
    return dist.sum_across([mean], device)[0] / world if world > 1 else mean


# ---------------------------------------------------------------------------- the run

def watch_stop_signals(note: str = "") -> list:
    """SIGTERM/SIGINT ask for a graceful stop: the returned list fills when one arrives."""
    stop_signal = []

    def on_signal(signum, frame):
        if not stop_signal:
            say_once(f"received {signal.Signals(signum).name}: stopping after this step{note}", sys.stdout)  # once, not per rank
        stop_signal.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop_signal


def claim(run_dir: Path, resume: bool, rank: int, world: int, device) -> RunWriter:
    """Rank 0 owns the run directory (store.writer.RunWriter.claim); the other ranks write nothing.
    A refusal on rank 0 is every rank's, so no process goes on alone."""
    writer, error = RunWriter.silent(run_dir), None
    if rank == 0:
        try:
            writer = RunWriter.claim(run_dir, new=not resume)
        except RunError as e:
            error = e
    if world > 1 and dist.sum_across([float(error is not None)], device)[0]:
        raise error or RunError(f"run {run_dir}: refused (rank 0 says why)")
    if error:
        raise error
    return writer


def train(cfg: Config, run_dir: Path, device_name: str = "auto", resume: bool = False,
          stop_at: int | None = None, argv: list[str] | None = None, preset: str = "",
          from_scratch: bool = False) -> int:
    """Train cfg in run_dir (new, or resumed from its newest checkpoint that loads). Returns the
    exit code; a RunError before the run's files are touched (the run is not ours, nothing to
    resume from) is raised for the command line to print.

    Under torchrun every rank calls this; rank 0 alone writes meta.json, metrics.jsonl, train.log.
    """
    rank, world, local_rank = dist.setup()
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    if device.type == "cpu" and cfg.train.compile:  # eager steps fragment a heap that is never trimmed
        reuse_freed_memory()
    config_text = to_toml(cfg)
    writer = claim(run_dir, resume, rank, world, device)
    versions = {"gigagpt": gigagpt.__version__, "torch": torch.__version__, "python": platform.python_version()}

    def start(step: int) -> None:
        writer.start(config_text, preset, argv, step=step, device=str(device), world_size=world,
                     max_steps=cfg.train.max_steps, params=param_count(cfg.model),
                     tokens_per_step=tokens_per_step(cfg), versions=versions)

    stop_signal = watch_stop_signals()

    def body():
        if not resume:
            start(0)
        return _train_loop(cfg, run_dir, device, resume, from_scratch, stop_at, writer, start, stop_signal, rank, world)

    status, reason = writer.run(body, start)
    code = writer.finish(status, reason, announce=rank == 0)
    if world > 1 and status != "failed":
        torch.distributed.destroy_process_group()
    return code


def _train_loop(cfg, run_dir, device, resume, from_scratch, stop_at, writer, start, stop_signal, rank, world):
    t, m = cfg.train, cfg.model
    info = dataset_info(cfg.data.dataset)
    train_data, val_data = open_split(info["path"], "train"), open_split(info["path"], "val")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    parallel = "none"
    if world > 1:
        check_world(cfg, world)
        parallel = choose_parallel(cfg, world, device_memory_total(device, world))

    def build():
        torch.manual_seed(t.seed)
        if parallel == "fsdp":
            model, raw_model = dist.build_fsdp(cfg, device)
        elif parallel == "ddp":
            model, raw_model = dist.build_ddp(cfg, device)
        else:
            model = raw_model = build_model(m, device)
        raw_model.checkpoint_blocks = t.activation_checkpointing
        return model, raw_model, make_optimizer(model, t, device), torch.Generator().manual_seed(t.seed)

    model, raw_model, optimizer, data_gen = build()
    # Where the run stands; log_steps and log_loss_sum are the steps since the last train line
    # and their summed loss, carried in checkpoints so that a resume at any step logs the same.
    step, tokens, best_val, log_steps, log_loss_sum = 0, 0, None, 0, 0.0
    if resume:
        path, state, skipped = checkpoint.restore(run_dir, cfg, parallel, model, raw_model, optimizer, data_gen,
                                                  device, rank, world)
        if path is None and not from_scratch:
            raise no_checkpoint(run_dir, skipped)
        if path is not None and from_scratch:
            raise RunError(f"run {run_dir}: --from-scratch: {path.name} loads; resume without --from-scratch "
                           "(or start a new run with `gigagpt train`)")
        if path is None and skipped:  # weights a failed load left half-written must not leak into a fresh start
            model, raw_model, optimizer, data_gen = build()
        if path is not None:
            step, tokens, best_val = state["step"], state["tokens"], state["best_val"]
            log_steps, log_loss_sum = state.get("log_steps", 0), state.get("log_loss_sum", 0.0)
        start(step)
        writer.set_aside(skipped, step)
        if rank == 0:
            print(f"resumed from {path.name} at step {step}" if path else "starting the queued run" if
                  writer.old.get("status") == "queued" else "no checkpoint loads: starting over at step 0 (--from-scratch)",
                  flush=True)
        writer.event("resume", step, log_steps=log_steps, log_loss_sum=log_loss_sum)

    if m.init_from and step == 0:  # a new run (or one started over) starts from the Hugging Face weights
        from gigagpt.hf import load_pretrained

        load_pretrained(raw_model, m, parallel)
    if t.compile:
        model = torch.compile(model)
    ctx = autocast_for(device, t.dtype)
    params = list(model.parameters())  # a list, not a generator: clipping must see them every step
    fpt, n_params, step_tokens = flops_per_token(m), param_count(m), tokens_per_step(cfg)
    peak, peak_source, peak_dtype = peak_info(device, t.dtype)
    proc = psutil.Process()
    writer.event("start", step, params=n_params, flops_per_token=fpt, peak_flops=peak, peak_source=peak_source,
                 peak_dtype=peak_dtype, device=str(device), world_size=world, parallel=parallel,
                 tokens_per_step=step_tokens)
    if rank == 0:
        print(f"{n_params:,} parameters on {world} x {device} ({parallel}), {step_tokens:,} tokens/step, "
              f"dataset {info['path']} ({info['tokens']['train']:,} train tokens)", flush=True)

    def save_checkpoint():
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        rngs = dist.gather((torch.get_rng_state(), cuda_rng)) if world > 1 else [(torch.get_rng_state(), cuda_rng)]
        extra = {"step": step, "tokens": tokens, "best_val": best_val, "config": to_dict(cfg),
                 "log_steps": step - log_from, "log_loss_sum": tally.loss_sum,
                 "rng": {"torch": [r[0] for r in rngs], "data": data_gen.get_state(),
                         "cuda": [r[1] for r in rngs] if cuda_rng is not None else None}}
        if parallel == "fsdp":
            path = dist.save_sharded(run_dir, step, model, optimizer, extra, rank, t.keep_checkpoints)
        elif rank == 0:
            path = checkpoint.save(run_dir, {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                                             **extra}, t.keep_checkpoints)
        if rank == 0:
            writer.append({"kind": "checkpoint", "step": step, "path": str(path.relative_to(run_dir))})
        if world > 1:
            torch.distributed.barrier()

    model.train()
    log_from = step - log_steps  # the last train line's step; tally.loss_sum: the loss since (guard.py)
    tally = guard.Tally(device, optimizer, world, log_loss_sum, guard.reads_every_step(device, optimizer))
    t_last, timed_from = time.perf_counter(), step  # throughput counts the steps this process timed
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    while step < t.max_steps:
        lr = lr_at(step, t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        share = my_share(draw_windows(train_data, cfg, t.grad_accum, data_gen), rank, world)
        loss_sum = torch.zeros((), device=device)
        for i, starts in enumerate(share):
            x, y = load_windows(train_data, starts, m.block_size, device, m.vocab_size)
            sync = i == len(share) - 1 or parallel != "ddp"  # DDP: all-reduce on the last micro-step only
            with nullcontext() if sync else model.no_sync():
                with ctx:
                    loss = model(x, y)
                (loss / len(share)).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
        tally.add(step + 1, loss_sum / len(share), grad_norm)
        stop_votes = False  # read steps: those that log, evaluate, checkpoint or may stop (guard.py)
        if tally.every_step or (world == 1 and stop_signal) or step + 1 in (stop_at, t.max_steps) or any(
                (step + 1) % k == 0 for k in (t.log_interval, t.eval_interval, t.checkpoint_interval)):
            stop_votes, failure = tally.read(step + 1, bool(stop_signal))
            if failure:
                return "failed", failure
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens += step_tokens

        if step % t.log_interval == 0 or step == t.max_steps:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            timed = step - timed_from
            tok_s = timed * step_tokens / (now - t_last)
            if device.type == "cpu" and rank == 0 and peak and fpt * tok_s / world > peak:
                # the cached peak was too low (measured under load?): measure again, at least this run's
                peak = cpu_peak_flops(t.dtype, exceeded=fpt * tok_s / world)
                writer.event("peak", step, peak_flops=peak, peak_source=peak_source, peak_dtype=peak_dtype,
                             achieved_flops=fpt * tok_s / world)
                print(f"the run beat the cached {t.dtype} peak: measured again, {peak / 1e9:,.0f} GFLOP/s", flush=True)
                now = time.perf_counter()  # the probe's time is not the next interval's
            rss, (alloc, peak_mem) = proc.memory_info().rss, device_memory(device)
            if world > 1:  # memory is per rank: report the largest
                rss, alloc, peak_mem = dist.max_across([rss, alloc, peak_mem], device)
            rec = {
                "kind": "train", "step": step, "loss": tally.loss_sum / (step - log_from), "lr": lr,
                "grad_norm": tally.norm, "tokens": tokens, "tok_s": tok_s,
                "mfu": fpt * tok_s / (peak * world) if peak else None, "step_time": (now - t_last) / timed,
                "rss": rss, "mem_alloc": alloc, "mem_peak": peak_mem,
            }
            writer.append(rec)
            if rank == 0:
                mfu = f" | mfu {100 * rec['mfu']:.1f}%" if rec["mfu"] is not None else ""
                print(f"step {step}/{t.max_steps} | loss {rec['loss']:.4f} | lr {lr:.2e} | "
                      f"{tok_s:,.0f} tok/s{mfu} | {1000 * rec['step_time']:.0f} ms/step", flush=True)
            writer.update(step=step)
            t_last, timed_from, log_from, tally.loss_sum = now, step, step, 0.0

        if step % t.eval_interval == 0 or step == t.max_steps:
            val = evaluate(model, val_data, cfg, device, ctx, rank, world)
            best_val = val if best_val is None else min(best_val, val)
            writer.append({"kind": "eval", "step": step, "val_loss": val})
            if rank == 0:
                print(f"step {step}: val loss {val:.4f}", flush=True)
            t_last, timed_from = time.perf_counter(), step  # eval time is not training throughput

        stopping = stop_votes or step == stop_at
        if stopping or step % t.checkpoint_interval == 0 or step == t.max_steps:
            save_checkpoint()
            writer.update(step=step)
            t_last, timed_from = time.perf_counter(), step
        if stopping:
            return "stopped", None
    writer.update(step=step)
    return "completed", None


if __name__ == "__main__":  # torchrun --nnodes ... -m gigagpt.train CONFIG --run-dir DIR [--set ...]
    from gigagpt.cli import main

    raise SystemExit(main(sys.argv[1:] if sys.argv[1:2] == ["resume"] else ["train", *sys.argv[1:]]))
