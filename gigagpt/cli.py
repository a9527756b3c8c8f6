"""`gigagpt` command line: train, resume, sample, data, dash."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gigagpt.cerebras_launch import launch_cerebras
from gigagpt.config import PRESETS_DIR, REPO, ConfigError, load_config, preset_names, show
from gigagpt.settings import cache_dir, runs_root
from gigagpt.store.files import RunError
from gigagpt.store.meta import printable
from gigagpt.torchrun import launch_torchrun, leave_group, say_once


def resolve_config(arg: str) -> Path:
    """A config path, or a preset name looked up in ./configs and then the repository's configs/."""
    p = Path(arg)
    try:
        if p.suffix == ".toml" or p.exists():
            return p
        for d in (Path("configs"), PRESETS_DIR):
            if (d / f"{arg}.toml").is_file():
                return d / f"{arg}.toml"
    except (OSError, ValueError):  # a name too long for a path, a NUL
        return p  # read_toml names the file and the reason
    raise ConfigError(f"config {show(arg)}: no such file or preset; presets: {', '.join(preset_names())}")


# Under torchrun every rank runs the same command; only rank 0 checks the run directory (the
# others would see the run that rank 0 has just started).
RANK0 = os.environ.get("RANK", "0") == "0"
UNDER_TORCHRUN = int(os.environ.get("WORLD_SIZE", "1")) > 1


def find_run(args) -> Path:
    """RUN as a directory, or an id under the runs root or the settings file's extra roots."""
    from gigagpt.runs_cli import roots_of
    from gigagpt.store.layout import find_run as find

    return find(roots_of(args), args.run)


def passthrough(args) -> list[str]:
    out = [x for kv in args.set for x in ("--set", kv)] + ["--device", args.device]
    return out + (["--stop-at", str(args.stop_at)] if args.stop_at else [])


def cmd_train(args) -> int:
    from gigagpt.store import layout

    cache_dir()  # the trainer's peak cache: a $GIGAGPT_CACHE that cannot be used is refused before a run exists
    path = resolve_config(args.config)
    cfg = load_config(path, args.set + ([f"train.backend={args.backend}"] if args.backend else []))
    if cfg.model.init_from:  # the shape comes from the Hugging Face config.json, checked with its weights
        from gigagpt.hf_source import apply_init_from

        cfg = apply_init_from(cfg, path, args.set)
    if args.stop_at is not None and args.stop_at <= 0:
        raise ConfigError(f"--stop-at {args.stop_at}: must be > 0")
    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: must be >= 1")
    if args.run_dir:
        run_dir = Path(args.run_dir)
        if RANK0:  # refused here before any process starts; the trainer checks again under the run's lock
            layout.check_new_run_dir(run_dir)
    elif UNDER_TORCHRUN:
        raise ConfigError("under torchrun, pass --run-dir DIR (on a filesystem every node shares) "
                          "so that all processes write the same run")
    else:
        root, name = Path(args.runs_root) if args.runs_root else runs_root(), layout.check_run_id(args.name or path.stem)
        run_dir = None

    def new_dir() -> Path:  # made last, once nothing can refuse: an exclusive mkdir, so launches never share one
        return run_dir or layout.new_run_dir(root, name)

    if cfg.train.backend == "cerebras":
        from gigagpt.settings import check_cluster

        check_cluster(cfg, path)
        return launch_cerebras(cfg, ["train", str(path), "--run-dir", str(new_dir()), "--preset", path.stem,
                                     *cerebras_args(args)])
    if args.nproc > 1:
        from gigagpt.plan import check_world  # pure arithmetic: no torch before torchrun starts

        check_world(cfg, args.nproc)
        return launch_torchrun(args.nproc, ["train", str(path), "--run-dir", str(new_dir()), *passthrough(args)])
    from gigagpt.device import pick_device
    from gigagpt.train import train  # torch is imported only by the commands that need it

    check_memory(cfg, pick_device(args.device), path)  # a missing device or too small a one: before any file is written
    run_dir = new_dir()
    if RANK0:
        print(f"run directory: {run_dir}", flush=True)
    return train(cfg, run_dir, args.device, stop_at=args.stop_at, argv=sys.argv, preset=path.stem)


def check_memory(cfg, device, source) -> None:
    """Refuse a model whose training (the planner's estimate for one process) exceeds all of this
    device's memory: it would make a run directory and then die allocating, or swap for hours."""
    import psutil
    import torch

    from gigagpt.plan import memory_estimate

    need = memory_estimate(cfg, 1, "none", cfg.train.activation_checkpointing)["total"]
    have = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else psutil.virtual_memory().total
    if need > have:
        raise ConfigError(f"{source}: model.n_layer = {cfg.model.n_layer}, n_embd = {cfg.model.n_embd}, train.batch_size = "
                          f"{cfg.train.batch_size}: training needs about {need / 2**30:,.0f} GiB, and this {device.type} "
                          f"device has {have / 2**30:,.0f} GiB; see `gigagpt plan CONFIG` for how many devices it takes")


def cmd_resume(args) -> int:
    from gigagpt.store.layout import checkpoints
    from gigagpt.store.meta import read_meta
    from gigagpt.store.writer import check_not_running

    cache_dir()  # as in cmd_train

    run_dir = find_run(args)
    try:
        meta = read_meta(run_dir)
    except RunError as e:
        raise RunError(f"run {run_dir}: {e}") from None
    if RANK0:  # the lock: a live trainer (even a suspended one) keeps its run
        check_not_running(run_dir)
    if meta.status == "cancelled":
        raise RunError(f"run {run_dir}: cancelled before it started; nothing to resume")
    if meta.status == "queued":  # a queued run starts here (the queue runner resumes it): from step 0
        args.from_scratch = True
    scratch = ["--from-scratch"] if args.from_scratch else []
    nproc = args.nproc or (1 if UNDER_TORCHRUN else meta.world_size or 1)
    if nproc > 1:  # by default a run resumes with as many processes as it had
        return launch_torchrun(nproc, ["resume", str(run_dir), *passthrough(args), *scratch])
    ckpts = checkpoints(run_dir)
    if ckpts and ckpts[-1].suffix == ".dcp" and not UNDER_TORCHRUN:
        raise ConfigError(f"--nproc 1: {ckpts[-1]} is sharded (FSDP); resume it with --nproc N")
    cfg = load_config(run_dir / "config.toml", args.set)
    before = load_config(run_dir / "config.toml", check_data=False).model
    changed = [f"model.{k}" for k, v in vars(cfg.model).items() if v != getattr(before, k)]
    if changed:
        raise ConfigError(f"--set {', '.join(changed)}: a resumed run keeps its [model] section; "
                          "only [train] and [data] keys can change")
    if meta.status == "completed" and cfg.train.max_steps <= (meta.step or 0):
        raise ConfigError(f"run {run_dir}: completed at step {meta.step}; to train on, pass "
                          f"--set train.max_steps=N with N > {meta.step}")
    if cfg.train.backend == "cerebras":
        return launch_cerebras(cfg, ["resume", str(run_dir), *cerebras_args(args), *scratch], run_dir / "config.toml")
    if ckpts and ckpts[-1].suffix == ".mdl":
        raise ConfigError(f"{ckpts[-1]}: a Cerebras checkpoint (cstorch.save); it resumes with "
                          "train.backend = \"cerebras\" only")
    from gigagpt.device import pick_device
    from gigagpt.train import train

    check_memory(cfg, pick_device(args.device), run_dir / "config.toml")  # a queued run, or --set batch_size
    return train(cfg, run_dir, args.device, resume=True, stop_at=args.stop_at, argv=sys.argv,
                 from_scratch=args.from_scratch)


# ---------------------------------------------------------------------------- the Cerebras backend
# Its SDK lives in its own environment (torch 2.4): these commands run `python -m gigagpt.cerebras`
# with that environment's interpreter (gigagpt/cerebras_launch.py).

def cerebras_args(args) -> list[str]:
    if getattr(args, "nproc", None) not in (None, 1):
        raise ConfigError(f"--nproc {args.nproc}: the Cerebras backend runs one process; "
                          "use --set cerebras.num_systems=N for more CS systems")
    out = [x for kv in args.set for x in ("--set", kv)]
    return out + (["--stop-at", str(args.stop_at)] if getattr(args, "stop_at", None) else [])


def cmd_check_csx(args) -> int:
    path = resolve_config(args.config)
    load_config(path, args.set, check_data=False)  # config errors in a second, before the SDK starts
    return launch_cerebras(None, ["check", str(path), "--preset", path.stem, *cerebras_args(args)])


def cmd_env(args) -> int:
    from gigagpt.settings import CEREBRAS_ENV, describe
    from gigagpt.store.meta import printable

    if args.backend is None:  # which settings are in effect, and from where
        print("\n".join(printable(line) for line in describe()))
        return 0
    script = REPO / "scripts" / "cerebras-env.sh"
    return os.spawnv(os.P_WAIT, "/bin/bash", ["bash", str(script), str(args.path or CEREBRAS_ENV)])


def cmd_sample(args) -> int:
    from gigagpt.sample import load_model, stream_samples

    path, model = load_model(find_run(args))
    return stream_samples(path, model, args.prompt, args.num_samples, args.max_new_tokens, args.temperature,
                          args.top_k, args.seed, args.device)


def cmd_plan(args) -> int:
    import json

    from gigagpt.plan import DEVICE_PEAKS, format_plan, plan

    path = resolve_config(args.config)
    cfg = load_config(path, args.set, check_data=False)
    if args.devices < 1:
        raise ConfigError(f"--devices {args.devices}: must be >= 1")
    if not 0 < args.mfu <= 1:
        raise ConfigError(f"--mfu {args.mfu}: must be in (0, 1]")
    device_bytes, label = None, None
    if args.device_memory is not None:
        if not 0 < args.device_memory < 1e9:  # NaN and infinity too
            raise ConfigError(f"--device-memory {args.device_memory}: must be a number of GiB > 0")
        device_bytes, label = args.device_memory * 2**30, f"{args.device_memory:g} GiB"
    elif args.device:
        match = {k.lower(): k for k in DEVICE_PEAKS}.get(args.device.lower())
        if match is None:
            raise ConfigError(f"--device {args.device!r}: unknown; known: {', '.join(DEVICE_PEAKS)} "
                              "(or give --device-memory GiB)")
        device_bytes, label = DEVICE_PEAKS[match][1] * 2**30, match
    p = plan(cfg, args.devices, device_bytes, args.mfu)
    print(json.dumps(p, indent=2) if args.json else format_plan(p, str(path), label))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gigagpt", description="Train GPT-2-style models, from a laptop CPU to clusters.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_common(q):
        q.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
        q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
        q.add_argument("--runs-root", help="where runs live (default: $GIGAGPT_RUNS or ./runs)")
        q.add_argument("--stop-at", type=int, metavar="STEP",
                       help="checkpoint and stop (status 'stopped', resumable) after this step")
        q.add_argument("--nproc", type=int, default=None if q.prog.endswith("resume") else 1, metavar="N",
                       help="processes on this node, through torchrun (resume: as many as the run had)")
        if q.prog.endswith("train"):
            q.add_argument("--backend", choices=["torch", "cerebras"],
                           help="override train.backend: cerebras runs the Cerebras PyTorch SDK ([cerebras])")

    q = sub.add_parser("train", help="train a model from a config")
    q.add_argument("config", help="a TOML config path or a preset name (tiny, nano, 124m, 111m, ...)")
    q.add_argument("--run-dir", help="the run directory (default: <runs root>/<name>-<time>)")
    q.add_argument("--name", help="run name (default: the config's name)")
    add_common(q)
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("resume", help="continue a run from its newest checkpoint that loads")
    q.add_argument("run", help="a run directory or a run id under the runs root")
    q.add_argument("--from-scratch", action="store_true",
                   help="when no checkpoint loads (or none is left), start the run over at step 0 "
                        "instead of refusing")
    add_common(q)
    q.set_defaults(func=cmd_resume)

    q = sub.add_parser("sample", help="generate text from a run's latest checkpoint")
    q.add_argument("run", help="a run directory or a run id under the runs root")
    q.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    q.add_argument("--max-new-tokens", type=int, default=200)
    q.add_argument("--temperature", type=float, default=0.8)
    q.add_argument("--top-k", type=int, default=200)
    q.add_argument("--num-samples", type=int, default=1)
    q.add_argument("--seed", type=int, default=1337)
    q.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    q.add_argument("--runs-root")
    q.set_defaults(func=cmd_sample)

    from gigagpt.data_cli import add_data_parser  # numpy and the tokenizer module, no torch

    add_data_parser(sub)

    q = sub.add_parser("plan", help="parameters, FLOPs, memory per device and time to train a config")
    q.add_argument("config", help="a TOML config path or a preset name")
    q.add_argument("--devices", type=int, default=1, metavar="N", help="number of devices (default 1)")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--device", metavar="NAME", help="a named device: A100-40GB, A100-80GB, H100, H200, B200, MI300X, ...")
    g.add_argument("--device-memory", type=float, metavar="GiB", help="memory of one device")
    q.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation (default 0.4)")
    q.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_plan)

    from gigagpt.hf_export import add_export_parser  # torch only when it runs
    from gigagpt.queue_cli import add_queue_parser  # no torch: queue add, list, cancel, move, clear, run; sweep
    from gigagpt.runs_cli import add_runs_parser  # no torch: list, show, stop, export, rm, rename, tag

    add_runs_parser(sub)
    add_export_parser(sub)
    add_queue_parser(sub)

    q = sub.add_parser("check-csx", help="trace and lower a config for Cerebras CSX (no cluster needed)")
    q.add_argument("config", help="a TOML config path or a preset name")
    q.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    q.set_defaults(func=cmd_check_csx)

    q = sub.add_parser("env", help="show the settings in effect; with a backend, build its Python environment "
                                   "(cerebras: ~6 GB, minutes)")
    q.add_argument("backend", nargs="?", choices=["cerebras"])
    q.add_argument("--path", help="where (default: .venv-cerebras in the repository)")
    q.set_defaults(func=cmd_env)

    sub.add_parser("dash", help="open the dashboard (gigagpt dash --help: its options)", add_help=False)
    return p


def error_types() -> tuple:
    types = [ConfigError, RunError]
    for mod, name in (("gigagpt.corpus", "DataError"), ("gigagpt.tokenizer", "TokenizerError")):
        try:
            types.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["dash"]:  # the dashboard's own entry point parses its options; the core never imports app/
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "app", *argv[1:]])
    args = build_parser().parse_args(argv)
    try:
        os.getcwd()
    except OSError:
        say_once("gigagpt: error: the current directory no longer exists; cd somewhere that does")
        return 2
    try:
        return leave_group(args.func(args))
    except error_types() as e:
        say_once(f"gigagpt: error: {printable(str(e))}")  # one line, whatever a file held; once for all ranks
        return leave_group(2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gigagpt runs list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
