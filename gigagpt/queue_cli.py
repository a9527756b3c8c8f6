"""`gigagpt queue ...` and `gigagpt sweep`: line runs up in the runs root and let the queue runner
(gigagpt/runner.py) start them. Parsing and printing; the queue itself is gigagpt/store/queue.py.
No torch: queueing a run is checking its config and writing two files."""
from __future__ import annotations

import itertools
import json
import re
import sys
import time
from pathlib import Path

from gigagpt.config import ConfigError, load_config, parse_override, show, to_toml
from gigagpt.listing import fmt_time
from gigagpt.store.files import RunError
from gigagpt.store.layout import find_run
from gigagpt.store.meta import printable
from gigagpt.store.queue import cancel, enqueue, move, queued_runs, runner_state

MAX_SWEEP = 1000


def queue_root(args) -> Path:
    from gigagpt.settings import runs_root

    return Path(args.runs_root) if args.runs_root else runs_root()


def parse_grid(grids: list[str]) -> list[tuple[str, list[str]]]:
    """['train.lr=1e-3,3e-4'] -> [('train.lr', ['1e-3', '3e-4'])], each value type-checked."""
    out = []
    for text in grids:
        key, _, values = text.partition("=")
        items = [v.strip() for v in values.split(",")]
        if not key.strip() or not values.strip() or not all(items):
            raise ConfigError(f"--grid {show(text)}: expected section.key=value,value,..., e.g. train.lr=1e-3,3e-4")
        for v in items:
            if isinstance(parse_override(f"{key.strip()}={v}", "--grid")[2], list):
                raise ConfigError(f"--grid {key.strip()}: a list key; sweep keys of one value each")
        if key.strip() in [k for k, _ in out]:
            raise ConfigError(f"--grid {key.strip()}: given twice; list all its values in one --grid")
        out.append((key.strip(), items))
    return out


def with_init_from(cfg, path: Path, overrides: list[str]):
    """A config that starts from Hugging Face weights takes their shape, as `gigagpt train` does."""
    if not cfg.model.init_from:
        return cfg
    from gigagpt.hf_source import apply_init_from

    return apply_init_from(cfg, path, overrides)


def cmd_add(args) -> int:
    from gigagpt.cli import resolve_config

    path = resolve_config(args.config)
    cfg = with_init_from(load_config(path, args.set), path, args.set)
    run_dir = enqueue(queue_root(args), args.name or path.stem, to_toml(cfg), path.stem, sys.argv,
                      cfg.train.max_steps)
    position = len(queued_runs(run_dir.parent))
    print(f"queued {run_dir} (position {position}); {runner_hint(run_dir.parent)}")
    return 0


def cmd_sweep(args) -> int:
    """Every combination of the --grid values, each validated before any is queued."""
    from gigagpt.cli import resolve_config
    from gigagpt.store.layout import check_run_id

    path = resolve_config(args.config)
    grid = parse_grid(args.grid)
    combos = list(itertools.islice(itertools.product(*[vs for _, vs in grid]), MAX_SWEEP + 1))
    if len(combos) > MAX_SWEEP:
        raise ConfigError(f"--grid: more than {MAX_SWEEP} combinations; sweep fewer values")
    name = check_run_id(args.name or path.stem)
    runs = []
    for combo in combos:
        sets = [f"{k}={v}" for (k, _), v in zip(grid, combo)]
        cfg = with_init_from(load_config(path, args.set + sets), path, args.set + sets)
        values = {k: parse_override(s, "--grid")[2] for (k, _), s in zip(grid, sets)}
        label = " ".join(f"{k.split('.')[-1]}={v}" for (k, _), v in zip(grid, combo))
        runs.append((cfg, values, f"{name} {label}"[:100]))
    sweep_id = check_run_id(f"{name[:40]}-sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    root = queue_root(args)
    for cfg, values, display in runs:
        enqueue(root, name, to_toml(cfg), path.stem, sys.argv, cfg.train.max_steps, display,
                {"id": sweep_id, "values": values})
    print(f"queued sweep {sweep_id}: {len(runs)} runs ({' x '.join(f'{len(vs)} {k}' for k, vs in grid)}); "
          f"{runner_hint(root)}")
    return 0


def runner_hint(root: Path) -> str:
    state = runner_state(root)
    if state is None:
        return f"start them with `gigagpt queue run{'' if str(root) == 'runs' else f' --runs-root {root}'}`"
    return f"the queue runner (pid {state.get('pid', '?')}) starts them in turn"


def cmd_list(args) -> int:
    root = queue_root(args)
    queued, state = queued_runs(root), runner_state(root)
    if args.json:
        print(json.dumps({"runner": state, "queued": [
            {"position": i, "id": printable(p.name), "name": m.display_name, "path": printable(str(p)),
             "sweep": printable((m.sweep or {}).get("id") or "") or None,
             "created": m.created} for i, (p, m) in enumerate(queued, 1)]}, indent=2, ensure_ascii=False))
        return 0
    if state is None:
        print(f"queue runner: not running ({runner_hint(root)})")
    else:
        active = ", ".join(state.get("running") or []) or "nothing yet"
        print(f"queue runner: pid {state.get('pid', '?')}, {state.get('slots', '?')} slot(s), running {active}")
    if not queued:
        print(f"no queued runs in {root}")
        return 0
    print(f"{'#':>3}  {'RUN':<34} {'NAME':<32} {'SWEEP':<26} QUEUED")
    for i, (p, m) in enumerate(queued, 1):
        sweep = (m.sweep or {}).get("id", "")
        print(f"{i:>3}  {printable(p.name)[:34]:<34} {m.display_name[:32]:<32} {printable(sweep)[:26]:<26} "
              f"{fmt_time(m.created)}")
    return 0


def queued_run(args, arg: str) -> Path:
    return find_run([queue_root(args)], arg)


def cmd_cancel(args) -> int:
    for arg in args.runs:
        run_dir = queued_run(args, arg)
        cancel(run_dir)
        print(f"cancelled {run_dir.name}")
    return 0


def cmd_move(args) -> int:
    run_dir = queued_run(args, args.run)
    print(f"{run_dir.name}: position {move(run_dir, args.position)}")
    return 0


def cmd_clear(args) -> int:
    queued = queued_runs(queue_root(args))
    for run_dir, _ in queued:
        try:
            cancel(run_dir)
        except RunError as e:  # started meanwhile
            print(f"warning: {e}", file=sys.stderr)
    print(f"cancelled {len(queued)} queued run(s)")
    return 0


def cmd_run(args) -> int:
    from gigagpt.runner import detach, gpu_ids, run_queue

    if args.retries < 0:
        raise ConfigError(f"--retries {args.retries}: must be >= 0")
    devices = [d.strip() for d in args.devices.split(",")] if args.devices is not None else gpu_ids()
    bad = next((d for d in devices if not re.fullmatch(r"[0-9]{1,3}|(GPU|MIG)-[0-9A-Za-z/-]{1,80}", d)), None)
    if bad is not None or len(set(devices)) < len(devices):
        raise ConfigError(f"--devices {show(args.devices)}: must be distinct GPU indices or UUIDs, e.g. 0,1")
    slots = args.slots if args.slots is not None else max(1, len(devices))
    if slots < 1:
        raise ConfigError(f"--slots {args.slots}: must be >= 1")
    if devices and slots > len(devices):
        raise ConfigError(f"--slots {slots}: one run per device, and there are {len(devices)} ({','.join(devices)})")
    root = queue_root(args)
    if args.foreground:
        return run_queue(root, slots, devices[:slots], args.follow, args.retries)
    argv = ["--slots", str(slots), "--retries", str(args.retries), "--runs-root", str(root)]
    argv += (["--devices", ",".join(devices[:slots])] if devices else []) + (["--follow"] if args.follow else [])
    return detach(root, argv)


def add_queue_parser(sub) -> None:
    q = sub.add_parser("queue", help="line runs up and run them unattended (add, list, cancel, move, clear, run)")
    qs = q.add_subparsers(dest="queue_command", required=True, metavar="ACTION")

    def root_arg(p):
        p.add_argument("--runs-root", help="the runs root whose queue this is (default: $GIGAGPT_RUNS or ./runs)")
        return p

    p = root_arg(qs.add_parser("add", help="queue a run of a config"))
    p.add_argument("config", help="a TOML config path or a preset name")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--name", help="run name (default: the config's name)")
    p.set_defaults(func=cmd_add)
    p = root_arg(qs.add_parser("list", help="the queued runs, in the order they start, and the runner"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = root_arg(qs.add_parser("cancel", help="cancel queued runs (they never start)"))
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.set_defaults(func=cmd_cancel)
    p = root_arg(qs.add_parser("move", help="move a queued run to a position (1 = next)"))
    p.add_argument("run", metavar="RUN")
    p.add_argument("position", type=int)
    p.set_defaults(func=cmd_move)
    p = root_arg(qs.add_parser("clear", help="cancel every queued run"))
    p.set_defaults(func=cmd_clear)
    p = root_arg(qs.add_parser("run", help="start the queue runner: a detached process that starts queued runs "
                                          "in order as slots free up"))
    p.add_argument("--slots", type=int, help="runs at once (default: one per GPU; 1 on CPU)")
    p.add_argument("--devices", help="GPUs to use, e.g. 0,1 (default: all; each run pinned to one)")
    p.add_argument("--follow", action="store_true", help="stay when the queue is empty, for runs queued later")
    p.add_argument("--retries", type=int, default=0, metavar="K",
                   help="resume a run that crashed (not one that failed) up to K times")
    p.add_argument("--foreground", action="store_true", help="run in this process (for schedulers)")
    p.set_defaults(func=cmd_run)

    p = root_arg(sub.add_parser("sweep", help="queue a run for every combination of --grid values"))
    p.add_argument("config", help="a TOML config path or a preset name")
    p.add_argument("--grid", action="append", default=[], required=True, metavar="SECTION.KEY=V1,V2,...",
                   help="values of one key (repeatable: the cross product is queued)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--name", help="sweep and run name (default: the config's name)")
    p.set_defaults(func=cmd_sweep)
