"""The Cerebras backend: train (and check) the same GPT through the Cerebras PyTorch SDK.

Runs in the SDK's own environment (CPython 3.11, torch 2.4, `gigagpt env cerebras`): `gigagpt train`
with train.backend = "cerebras" and `gigagpt check-csx` start `python -m gigagpt.cerebras ...` with
that environment's interpreter. Writes the same run directory as gigagpt/train.py (docs/run-format.md);
checkpoints are cstorch.save files, checkpoints/step_%08d.mdl.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

# The SDK lowers through its own executables (torch-cirh-opt) in the environment's bin/.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

import psutil  # noqa: E402
import torch  # noqa: E402

import gigagpt  # noqa: E402
from gigagpt.batches import eval_batches, train_batches, zero_batches  # noqa: E402
from gigagpt.cerebras_sdk import csx_options, sdk_version, setup  # noqa: E402
from gigagpt.config import Config, ConfigError, load_config, to_dict, to_toml  # noqa: E402
from gigagpt.dataset import dataset_info  # noqa: E402
from gigagpt.plan import flops_per_token, param_count, tokens_per_step  # noqa: E402
from gigagpt.settings import check_cluster  # noqa: E402
from gigagpt.store.checkpoints import Unloadable, newest_loadable, no_checkpoint, prune_checkpoints  # noqa: E402
from gigagpt.store.failed import writing  # noqa: E402
from gigagpt.store.files import RunError  # noqa: E402
from gigagpt.store.writer import RunWriter  # noqa: E402
from gigagpt.train import watch_stop_signals  # noqa: E402

# ---------------------------------------------------------------------------- check-csx

def check_csx(cfg: Config, name: str) -> int:
    """Trace and lower one training step for CSX with validate_only: no cluster, no weights."""
    import cerebras.pytorch as cstorch

    m, t0 = cfg.model, time.time()
    print(f"check-csx {name}: {param_count(m):,} parameters, batch {cfg.train.batch_size * cfg.train.grad_accum} "
          f"x {m.block_size} tokens; tracing and lowering one training step for CSX (validate_only, no "
          f"cluster) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="gigagpt-check-csx-") as art:
        try:
            *_, train_step, _ = setup(cfg, "CSX", art, validate_only=True)
            executor = cstorch.utils.data.DataExecutor(
                cstorch.utils.data.DataLoader(zero_batches, to_dict(cfg)), num_steps=1)
            for x, y in executor:
                train_step(x, y)
            lowered = list(Path(art).glob("executors/*/cirh.mlir"))
            if not lowered:
                raise RuntimeError("the SDK finished without writing the lowered program (cirh.mlir)")
            size = lowered[0].stat().st_size
        except Exception as e:  # noqa: BLE001 - the SDK's error is the answer: which op failed
            print(f"check-csx {name}: FAILED after {time.time() - t0:.1f} s: {type(e).__name__}: "
                  f"{first_lines(str(e))}", flush=True)
            return 1
    rss = psutil.Process().memory_info().rss
    print(f"check-csx {name}: OK: lowered for CSX in {time.time() - t0:.1f} s ({size / 1e6:.1f} MB of "
          f"Cerebras IR; peak RSS {peak_rss() / 2**30:.2f} GiB, now {rss / 2**30:.2f} GiB)", flush=True)
    return 0


def first_lines(text: str, n: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n  ".join(lines[:n]) + ("\n  ..." if len(lines) > n else "")


def peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------------------- the run

def train(cfg: Config, run_dir: Path, resume: bool = False, stop_at: int | None = None,
          argv: list[str] | None = None, preset: str = "", from_scratch: bool = False) -> int:
    """Train cfg through the SDK in run_dir (new, or resumed from its newest checkpoint that
    loads). Exit code; a RunError before the run's files are touched is raised (one line, exit 2)."""
    check_cluster(cfg)
    c, config_text = cfg.cerebras, to_toml(cfg)
    writer = RunWriter.claim(run_dir, new=not resume)
    versions = {"gigagpt": gigagpt.__version__, "torch": torch.__version__, "python": sys.version.split()[0],
                "cerebras_pytorch": sdk_version()}

    def start(step: int) -> None:
        writer.start(config_text, preset, argv, step=step, device=f"cerebras-{c.target.lower()}", world_size=1,
                     max_steps=cfg.train.max_steps, params=param_count(cfg.model),
                     tokens_per_step=tokens_per_step(cfg), cerebras_systems=c.num_systems, versions=versions)

    stop_signal = watch_stop_signals(" (a Cerebras run resumes from its last checkpoint)")

    def body():
        if not resume:
            start(0)
        return _train_loop(cfg, run_dir, resume, from_scratch, stop_at, writer, start, stop_signal)

    return writer.finish(*writer.run(body, start))


def checkpoint_schedule(start: int, end: int, t, final: bool):
    """The executor's (0-based) checkpoint steps for global steps start+1 .. end."""
    from cerebras.pytorch.utils.data.utils import Schedule

    n, first = end - start, t.checkpoint_interval - start % t.checkpoint_interval - 1
    if first < n:
        return Schedule([Schedule.Range(start=first, end=n, step=t.checkpoint_interval, include_last=final)])
    return Schedule([Schedule.Range(start=n - 1, end=n, step=1, include_last=True)] if final else [])


def load_mdl(path: Path, cfg: Config) -> dict:
    """A Cerebras checkpoint's state; Unloadable when damaged, RunError when not this run's kind."""
    import cerebras.pytorch as cstorch

    if path.suffix != ".mdl":
        raise RunError(f"{path.name}: not a Cerebras checkpoint; resume it with train.backend = \"torch\"")
    try:
        state = cstorch.load(str(path))
    except Exception as e:  # noqa: BLE001 - whatever a damaged HDF5 file makes the SDK raise
        raise Unloadable(f"unreadable ({type(e).__name__}: {first_lines(str(e), 1)})") from None
    missing = [k for k in ("model", "optimizer", "lr_scheduler", "step", "tokens", "best_val", "config")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise Unloadable(f"not a gigagpt checkpoint (no {', '.join(missing)})")
    if not isinstance(state["config"], dict) or not isinstance(state["config"].get("model"), dict):
        raise Unloadable("not a gigagpt checkpoint (no [model] in its config)")
    if {**to_dict(Config())["model"], **state["config"]["model"]} != to_dict(cfg)["model"]:  # a key added since: its default
        raise RunError(f"{path.name}: the [model] section differs from the checkpoint's; "
                       "a resumed run can change [train] keys only")
    return state


def _train_loop(cfg, run_dir, resume, from_scratch, stop_at, writer, start, stop_signal):
    import cerebras.pytorch as cstorch

    t, m, c = cfg.train, cfg.model, cfg.cerebras
    info = dataset_info(cfg.data.dataset)
    step, tokens, best_val, state = 0, 0, None, None
    if resume:  # the checkpoint is chosen before anything is written: none loads -> refused
        path, state, skipped = newest_loadable(run_dir, lambda p: load_mdl(p, cfg))
        if path is None and not from_scratch:
            raise no_checkpoint(run_dir, skipped)
        if path is not None and from_scratch:
            raise RunError(f"run {run_dir}: --from-scratch: {path.name} loads; resume without --from-scratch "
                           "(or start a new run with `gigagpt train`)")
        if state is not None:
            step, tokens, best_val = state["step"], state["tokens"], state["best_val"]
        start(step)
        writer.set_aside(skipped, step)
    backend, model, optimizer, schedule, train_step, eval_step = setup(
        cfg, c.target, str(run_dir / "cerebras"), **csx_options(cfg, info["path"]))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["lr_scheduler"])
        print(f"resumed from {path.name} at step {step}", flush=True)
    elif resume:
        print("no checkpoint loads: starting over at step 0 (--from-scratch)", flush=True)
    if resume:
        writer.event("resume", step)
    step_tokens, n_params, device = tokens_per_step(cfg), param_count(m), f"cerebras-{c.target.lower()}"
    writer.event("start", step, params=n_params, flops_per_token=flops_per_token(m), peak_flops=None,
                 device=device, world_size=1, cerebras_systems=c.num_systems, parallel="cerebras",
                 tokens_per_step=step_tokens, cerebras_pytorch=sdk_version())
    print(f"{n_params:,} parameters on {device} ({c.num_systems} system(s)), {step_tokens:,} tokens/step, "
          f"dataset {info['path']} ({info['tokens']['train']:,} train tokens)", flush=True)
    proc, failure = psutil.Process(), []
    clock = {"t": time.perf_counter(), "step": step}

    @cstorch.step_closure
    def log(loss, norm, lr, at, executor):
        loss, norm, lr = loss.item(), norm.item(), float(lr)
        if not (loss == loss and abs(loss) != float("inf") and norm == norm and abs(norm) != float("inf")):
            failure.append(f"non-finite loss ({loss}) or gradient norm ({norm}) at step {at}")
            return
        now, rate = time.perf_counter(), executor.profiler.rate_tracker  # the SDK's rate tracker
        # Its clock starts after the first step (compile and set-up excluded): sequences since the
        # previous log over its time since then; the first log of an executor falls back to wall time.
        step_time = (now - clock["t"]) / max(1, at - clock["step"])
        tok_s = step_tokens / step_time
        if clock["samples"] is not None and rate.total_time > clock["secs"]:
            tok_s = (rate.total_samples - clock["samples"]) * m.block_size / (rate.total_time - clock["secs"])
        util = rate.flops_utilization
        rec = {"kind": "train", "step": at, "loss": loss, "lr": lr, "grad_norm": norm,
               "tokens": tokens + (at - step0) * step_tokens, "tok_s": tok_s,
               "mfu": util / 100 if util is not None else None, "step_time": step_time,
               "rss": proc.memory_info().rss, "mem_alloc": None, "mem_peak": None}
        writer.append(rec)
        print(f"step {at}/{t.max_steps} | loss {loss:.4f} | lr {lr:.2e} | {rec['tok_s']:,.0f} tok/s | "
              f"{1000 * rec['step_time']:.0f} ms/step", flush=True)
        writer.update(step=at)
        clock.update(t=now, step=at, samples=rate.total_samples, secs=rate.total_time)

    @cstorch.checkpoint_closure
    def save(at):
        path = run_dir / "checkpoints" / f"step_{at:08d}.mdl"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "lr_scheduler": schedule.state_dict(), "step": at, "tokens": tokens + (at - step0) * step_tokens,
                 "best_val": best_val, "config": to_dict(cfg)}
        with writing(f"checkpoints/{path.name}"):
            path.parent.mkdir(exist_ok=True)
            try:
                cstorch.save(state, str(tmp))
                os.replace(tmp, path)
            finally:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
        prune_checkpoints(run_dir, t.keep_checkpoints)
        writer.append({"kind": "checkpoint", "step": at, "path": str(path.relative_to(run_dir))})
        writer.update(step=at)

    last = min(t.max_steps, stop_at) if stop_at and stop_at > step else t.max_steps
    while step < last:
        # One executor per stretch between evaluations; it ends at the next eval, the stop or the end.
        step0, end = step, min(last, (step // t.eval_interval + 1) * t.eval_interval)
        executor = cstorch.utils.data.DataExecutor(
            cstorch.utils.data.DataLoader(train_batches, to_dict(cfg), str(info["path"]), step, end - step),
            num_steps=end - step, checkpoint_steps=checkpoint_schedule(step, end, t, end == last),
            activation_steps=t.log_interval)
        model.train()
        clock.update(samples=None, secs=0.0)
        for i, (x, y) in enumerate(executor):
            at = step + i + 1
            loss, norm, lr = train_step(x, y)
            if at % t.log_interval == 0 or at == end:
                log(loss, norm, lr, at, executor)
            save(at)
            if failure or stop_signal:
                break
        if failure:
            return "failed", failure[0] + "; the bad weights were not checkpointed"
        if stop_signal:
            return "stopped", None
        step, tokens = end, tokens + (end - step) * step_tokens
        if end % t.eval_interval == 0 or end == t.max_steps:
            best_val = evaluate(cfg, info, model, eval_step, writer, end, best_val)
        clock["t"] = time.perf_counter()
    writer.update(step=step)
    return ("completed" if step >= t.max_steps else "stopped"), None


def evaluate(cfg, info, model, eval_step, writer, at, best_val):
    import cerebras.pytorch as cstorch

    losses = []

    @cstorch.step_closure
    def collect(loss):
        losses.append(loss.item())

    model.eval()
    executor = cstorch.utils.data.DataExecutor(
        cstorch.utils.data.DataLoader(eval_batches, to_dict(cfg), str(info["path"])),
        num_steps=cfg.train.eval_steps)
    for x, y in executor:
        collect(eval_step(x, y))
    model.train()
    val = sum(losses) / len(losses)
    writer.append({"kind": "eval", "step": at, "val_loss": val})
    print(f"step {at}: val loss {val:.4f}", flush=True)
    return val if best_val is None else min(best_val, val)


# ---------------------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> int:
    """python -m gigagpt.cerebras {train CONFIG --run-dir DIR | resume RUN_DIR | check CONFIG} [--set ...]
    (and `export CKPT.mdl --run-dir OUT.pt`: the weights as a torch.save file, for `gigagpt sample`)"""
    p = argparse.ArgumentParser(prog="gigagpt.cerebras")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("train", "resume", "check", "export"):
        q = sub.add_parser(name)
        q.add_argument("path")
        q.add_argument("--set", action="append", default=[])
        q.add_argument("--run-dir")
        q.add_argument("--stop-at", type=int)
        q.add_argument("--preset", default="")
        q.add_argument("--from-scratch", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.command == "check":
            cfg = load_config(args.path, args.set, check_data=False)
            return check_csx(on_cerebras(cfg), args.preset or Path(args.path).stem)
        if args.command == "export":
            return export(Path(args.path), Path(args.run_dir))
        if args.command == "resume":
            run_dir = Path(args.path)
            cfg = on_cerebras(load_config(run_dir / "config.toml", args.set))
            return train(cfg, run_dir, resume=True, stop_at=args.stop_at, argv=sys.argv, from_scratch=args.from_scratch)
        if not args.run_dir:
            raise ConfigError("--run-dir: required")
        cfg = on_cerebras(load_config(args.path, args.set))
        return train(cfg, Path(args.run_dir), stop_at=args.stop_at, argv=sys.argv, preset=args.preset)
    except (ConfigError, RunError) as e:
        print(f"gigagpt: error: {e}", file=sys.stderr)
        return 2


def export(mdl: Path, out: Path) -> int:
    import cerebras.pytorch as cstorch

    from gigagpt.checkpoint import save_file

    state = cstorch.load(str(mdl))
    keep = {k: state[k] for k in ("model", "step", "tokens", "best_val", "config")}
    save_file(out, keep)
    return 0


def on_cerebras(cfg: Config) -> Config:
    """The config as this backend runs it: attention as masked softmax with an arange mask (what
    the CSX compiler lowers; the parameters are the same as with "sdpa")."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, attention="math"),
                               train=dataclasses.replace(cfg.train, backend="cerebras"))


if __name__ == "__main__":
    raise SystemExit(main())
