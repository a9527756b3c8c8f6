"""`gigagpt runs`: the command line over the run store (list, show, stop, export, rm, rename, tag,
compare). Parsing and printing only; what they do is in gigagpt/store/.

Runs live under the runs root (--runs-root, else $GIGAGPT_RUNS or ./runs; new runs go there) and
under the extra roots of the settings file (gigagpt.toml: [runs] roots = [...]), all browsed alike.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path

from gigagpt.listing import (
    ROOT_COLUMN,
    SORT_KEYS,
    TABLE,
    fmt_duration,
    fmt_loss,
    fmt_step,
    fmt_time,
    human_count,
    matches,
    never_started,
    sort_rows,
    table,
)
from gigagpt.settings import runs_root
from gigagpt.store.actions import check_deletable, delete, interrupted_deletions, rename, running_pid, send_signal, set_tags
from gigagpt.store.curves import config_diff, flat_config, read_config_text
from gigagpt.store.export import check_target, export_csv, export_tensorboard
from gigagpt.store.files import RunError, os_reason
from gigagpt.store.layout import find_run, run_labels, runs_roots
from gigagpt.store.meta import printable, utf8
from gigagpt.store.summary import STATUSES, list_all, run_status, run_summary


def root_of(args) -> Path:
    return Path(args.runs_root) if getattr(args, "runs_root", None) else runs_root()


def roots_of(args) -> list[Path]:
    """The runs roots of a `gigagpt runs` command; problems with extra roots go to stderr."""
    roots, problems = runs_roots(getattr(args, "runs_root", None))
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return roots




def cmd_list(args) -> int:
    statuses = [s for text in args.status for s in text.split(",") if s]
    for s in statuses:
        if s not in STATUSES:
            raise RunError(f"--status {s}: must be one of {', '.join(STATUSES)}")
    if args.sort and args.sort not in SORT_KEYS:
        raise RunError(f"--sort {args.sort}: must be one of {', '.join(SORT_KEYS)}")
    roots = roots_of(args)
    for root in roots:
        for left in interrupted_deletions(root):
            print(f"warning: {printable(str(left))}: what an interrupted `runs rm` left; remove it with "
                  f"rm -r", file=sys.stderr)
    rows = [r for r in list_all(roots) if matches(r, args.filter or "", statuses)]
    if args.sort:
        rows = sort_rows(rows, args.sort, reverse=args.reverse)
    elif args.reverse:
        rows.reverse()
    if args.json:
        print(json_text(rows))
    elif rows:
        print(table(rows, TABLE[:1] + (ROOT_COLUMN,) + TABLE[1:] if len(roots) > 1 else TABLE))
    else:
        print(f"no runs in {', '.join(map(str, roots))}" + (" match" if statuses or args.filter else ""), file=sys.stderr)
    return 0


def cmd_show(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    row = run_summary(run_dir)
    if args.json:
        print(json_text({**row, "config": flat_config(run_dir)}))
        return 0
    fields = [("run", printable(row["id"])), ("name", row["name"]), ("path", printable(row["path"])),
              ("status", row["status"]),
              ("preset", row["preset"] or "–"), ("step", fmt_step(row)), ("tokens", human_count(row["tokens"])),
              ("loss", fmt_loss(row["loss"])), ("val loss", fmt_loss(row["val_loss"])),
              ("best val", fmt_loss(row["best_val"])), ("tokens/s", human_count(row["tok_s"])),
              ("params", human_count(row["params"])),
              ("device", f"{row['device'] or '–'} x {row['world_size'] or 1} on {row['host'] or '?'}"),
              ("started", "not started" if never_started(row) else fmt_time(row["started"])),
              ("duration", "–" if never_started(row) else fmt_duration(row["duration"])),
              ("checkpoints", f"{row['checkpoints']}" + (f", last at step {row['last_checkpoint']}"
                                                         if row["last_checkpoint"] is not None else "")),
              ("tags", ", ".join(row["tags"]) or "–")]
    if row["failure"]:
        fields.append(("failure", row["failure"]))
    if row["problem"]:
        fields.append(("problem", row["problem"]))
    for key, value in fields:
        print(f"{key:>12}  {printable(str(value))}")
    return 0


def cmd_stop(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    pid = running_pid(run_dir)
    send_signal(pid, signal.SIGKILL if args.kill else signal.SIGTERM)
    if args.kill:
        print(f"killed {run_dir.name} (pid {pid}); resume it from its last checkpoint with "
              f"`gigagpt resume {run_dir.name}`")
    else:
        print(f"stop requested: {run_dir.name} (pid {pid}) checkpoints after this step, then exits")
    return 0


def cmd_export(args) -> int:
    roots = roots_of(args)
    dirs = [find_run(roots, r) for r in args.runs]
    out = args.csv or args.tensorboard
    if out != "-":
        check_target(out, dirs)
    try:
        if args.csv == "-":
            n = export_csv(dirs, sys.stdout)
        elif args.csv:
            with open(args.csv, "w", newline="", encoding="utf-8") as f:
                n = export_csv(dirs, f)
        else:
            written = export_tensorboard(dirs, Path(args.tensorboard))
    except OSError as e:
        raise RunError(f"{out}: cannot write it ({os_reason(e)})") from None
    if args.csv and args.csv != "-":
        print(f"wrote {n:,} rows from {len(dirs)} run(s) to {args.csv}", file=sys.stderr)
    elif args.tensorboard:
        print(f"wrote {len(written)} TensorBoard run(s) under {args.tensorboard}: "
              f"tensorboard --logdir {args.tensorboard}", file=sys.stderr)
    return 0


def cmd_rm(args) -> int:
    roots = roots_of(args)
    found = {}
    for r in args.runs:  # a run named twice (by id and by path) is deleted once
        d = find_run(roots, r)
        found.setdefault(os.path.realpath(d), d)
    dirs = list(found.values())
    for run_dir in dirs:  # refuse before asking, and before deleting any
        check_deletable(run_dir, roots)
        if run_status(run_dir) == "running":
            raise RunError(f"run {run_dir.name}: running; stop it first (gigagpt runs stop {run_dir.name})")
    if not args.yes:
        if not sys.stdin.isatty():
            raise RunError("runs rm: pass --yes to delete without a question (stdin is not a terminal)")
        answer = input(f"delete {len(dirs)} run(s) ({', '.join(printable(d.name) for d in dirs)}) and their "
                       "checkpoints? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    for run_dir in dirs:
        delete(run_dir, roots)
        print(f"deleted {printable(str(run_dir))}")
    return 0


def cmd_rename(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    meta = rename(run_dir, args.name)
    print(f"{printable(run_dir.name)}: name {meta['name']!r}")
    return 0


def cmd_tag(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    if args.remove:
        meta = set_tags(run_dir, remove=args.tags)
    else:
        meta = set_tags(run_dir, add=args.tags)
    print(f"{printable(run_dir.name)}: tags {', '.join(meta['tags']) or '(none)'}")
    return 0


def cmd_compare(args) -> int:
    roots = roots_of(args)
    dirs = [find_run(roots, r) for r in args.runs]
    rows = [run_summary(d) for d in dirs]
    print(table(rows, TABLE[:-2]))
    diff = config_diff(dirs)
    unread = [label for d, label in zip(dirs, run_labels(dirs)) if read_config_text(d) is None]
    print()
    if unread:
        print(f"no readable config.toml: {', '.join(unread)}")
    if diff:
        print(table([{"key": k, "values": v} for k, v in diff],
                    [("CONFIG KEY", lambda r: printable(r["key"]))] + [
                        (printable(label), lambda r, i=i: "–" if r["values"][i] is None
                         else printable(json.dumps(r["values"][i], default=str)))
                        for i, label in enumerate(run_labels(dirs))]))
    else:
        print("the configs are the same")
    return 0


def json_text(obj) -> str:
    """Strict JSON (no NaN or Infinity tokens, valid UTF-8), whatever a run's files held."""
    def fix(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, str):
            return utf8(v)
        if isinstance(v, dict):
            return {utf8(str(k)): fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        return v if v is None or isinstance(v, (int, float, bool)) else str(v)
    return json.dumps(fix(obj), indent=2, allow_nan=False)


def add_runs_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "runs", help="list, inspect, stop, export and delete past runs",
        description="Runs live under the runs root (--runs-root DIR, else $GIGAGPT_RUNS or ./runs), "
        "where new runs are launched, and under the extra roots of the settings file (gigagpt.toml: "
        "[runs] roots = [\"/path/a\", ...]), which are browsed alike: --runs-root replaces the default "
        "root only, the extra roots are still searched. A RUN is a run id found in one of the roots, or "
        "a run directory's path (needed when two roots hold the same id).")
    sub = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

    def command(name, func, help):
        q = sub.add_parser(name, help=help, description=help)
        q.add_argument("--runs-root", help="the runs root (default: $GIGAGPT_RUNS or ./runs); the "
                       "settings file's [runs] roots are searched too")
        q.set_defaults(func=func)
        return q

    q = command("list", cmd_list, "every run with status, progress and losses (damaged ones with their problem)")
    q.add_argument("--status", action="append", default=[], metavar="S",
                   help=f"only runs with this status ({', '.join(STATUSES)}; repeatable or comma-separated)")
    q.add_argument("--filter", metavar="TEXT", help="only runs whose id, name, preset, device or tags hold every word")
    q.add_argument("--sort", metavar="KEY", help=f"sort by {', '.join(SORT_KEYS)}, ascending "
                   "(default: newest first)")
    q.add_argument("--reverse", action="store_true", help="reverse the order")
    q.add_argument("--json", action="store_true", help="a JSON array, one object per run")

    q = command("show", cmd_show, "one run in detail")
    q.add_argument("run", help="a run id under the runs roots, or a run directory")
    q.add_argument("--json", action="store_true", help="a JSON object, the config included")

    q = command("stop", cmd_stop, "stop a running run (SIGTERM: it checkpoints first)")
    q.add_argument("run")
    q.add_argument("--kill", action="store_true", help="SIGKILL at once: steps since the last checkpoint are lost")

    q = command("export", cmd_export, "write runs' metrics as CSV or as TensorBoard event files")
    q.add_argument("runs", nargs="+", metavar="RUN")
    out = q.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", metavar="FILE", help="long form: run,step,kind,metric,value ('-': stdout)")
    out.add_argument("--tensorboard", metavar="DIR", help="one event directory per run under DIR (needs tensorboardX)")

    q = command("rm", cmd_rm, "delete runs and their checkpoints (never a running run)")
    q.add_argument("runs", nargs="+", metavar="RUN")
    q.add_argument("-y", "--yes", action="store_true", help="do not ask")

    q = command("rename", cmd_rename, "set a run's display name (the directory keeps its id)")
    q.add_argument("run")
    q.add_argument("name")

    q = command("tag", cmd_tag, "add tags to a run (or remove them with --remove)")
    q.add_argument("run")
    q.add_argument("tags", nargs="+", metavar="TAG")
    q.add_argument("--remove", action="store_true", help="remove these tags instead")

    q = command("compare", cmd_compare, "runs side by side, and the config keys that differ")
    q.add_argument("runs", nargs="+", metavar="RUN")
