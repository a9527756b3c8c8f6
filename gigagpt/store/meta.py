"""meta.json as a checked record: every field has a type and a range; a bad one makes the run
damaged (`meta.json: <field>: <why>`), never an exception elsewhere."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gigagpt.store.files import NotRegular, RunError, TooLarge, os_reason, read_regular

STATUSES = ("queued", "running", "completed", "stopped", "failed", "cancelled")
NAME_MAX = 128  # a run id's limit (store.layout.SAFE_ID): a run's name defaults to its id
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+:=/-]{0,63}")  # fullmatch
# C0/C1 controls, soft hyphen, zero-width and direction marks, line separators, bidi embeddings
# and isolates, the BOM: what can hide or reorder text in a terminal cell
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\xad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
META_MAX_BYTES = 1 << 20  # a real meta.json is ~1 KB; a bigger one is not read


def utf8(text: str) -> str:
    """Text that encodes as UTF-8: undecodable bytes of a file name (surrogate escapes) and lone
    surrogates from JSON become U+FFFD."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def printable(text: str) -> str:
    """Text for one line of a table or a header: valid UTF-8, control and bidi characters dropped."""
    return CONTROL.sub("", utf8(text))


def _str(v, limit=4096):
    if not isinstance(v, str):
        return f"must be text, not {type(v).__name__}"
    if len(v) > limit:
        return f"longer than {limit} characters"
    return None if utf8(v) == v else "not valid UTF-8 text (a lone surrogate)"


def _opt(check):
    return lambda v: None if v is None else check(v)


def _int(low=0, high=2**63 - 1):
    def check(v):
        if not isinstance(v, int) or isinstance(v, bool):
            return f"must be an integer, not {type(v).__name__}"
        return None if low <= v <= high else f"{v} is outside {low}..{high}"
    return check


def _time(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return f"must be a Unix time (a number), not {type(v).__name__}"
    # compared before any float conversion: an integer like 10**400 overflows math.isfinite
    return None if 0 <= v < 1e11 else f"{repr(v)[:40]} is not a Unix time"


def _status(v):
    return None if v in STATUSES else f"{v!r} must be one of {', '.join(STATUSES)}"


def _tags(v):
    if not isinstance(v, list):
        return f"must be a list of tags, not {type(v).__name__}"
    bad = next((t for t in v if not isinstance(t, str) or not TAG.fullmatch(t)), None)
    return None if bad is None else f"{printable(repr(bad))[:80]} is not a tag"


def _command(v):
    if not isinstance(v, list) or not all(isinstance(a, str) for a in v):
        return "must be a list of strings"
    return None


def _order(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return f"must be a number, not {type(v).__name__}"
    return None if -1e12 < v < 1e12 else f"{repr(v)[:40]} is out of range"


def _sweep(v):
    """{"id": "<sweep id>", "values": {"train.lr": 0.001, ...}}: the values this run of a sweep has."""
    if not isinstance(v, dict) or _str(v.get("id"), 200) or not isinstance(v.get("values"), dict):
        return "must be an object with an id and values"
    ok = all(isinstance(k, str) and not _str(k, 200) and isinstance(x, (int, float, str, bool))
             for k, x in v["values"].items())
    return None if ok and len(v["values"]) <= 64 else "values must map config keys to numbers, strings or booleans"


def _versions(v):
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        return "must be an object of version strings"
    return None


# field -> check (None when good, else why); a missing field is None. Only status is required.
CHECKS = {
    "id": _opt(_str), "name": _opt(lambda v: _str(v, NAME_MAX)), "tags": _opt(_tags), "preset": _opt(_str),
    "status": _status, "failure": _opt(_str), "pid": _opt(_int(1, 2**31 - 1)), "host": _opt(_str),
    "device": _opt(_str), "world_size": _opt(_int(1, 1 << 20)), "command": _opt(_command),
    "created": _opt(_time), "updated": _opt(_time), "heartbeat": _opt(_time),
    "step": _opt(_int()), "max_steps": _opt(_int()), "params": _opt(_int()),
    "tokens_per_step": _opt(_int()), "versions": _opt(_versions), "cerebras_systems": _opt(_int(1, 1 << 20)),
    "queue_order": _opt(_order), "sweep": _opt(_sweep), "queued_at": _opt(_time),
}


@dataclass
class Meta:
    """A checked meta.json. `raw` keeps every key as written, for a writer to rewrite it."""
    status: str
    id: str | None = None
    name: str | None = None
    tags: list = field(default_factory=list)
    preset: str | None = None
    failure: str | None = None
    pid: int | None = None
    host: str | None = None
    device: str | None = None
    world_size: int | None = None
    command: list | None = None
    created: float | None = None
    updated: float | None = None
    heartbeat: float | None = None
    step: int | None = None
    max_steps: int | None = None
    params: int | None = None
    tokens_per_step: int | None = None
    versions: dict | None = None
    cerebras_systems: int | None = None
    queue_order: float | None = None
    queued_at: float | None = None
    sweep: dict | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def display_name(self) -> str:
        return printable(self.name or self.id) or self.id


def check_meta(data, where: str = "meta.json") -> Meta:
    """A Meta from parsed JSON, or RunError `<where>: <field>: <why>` for the first bad field."""
    if not isinstance(data, dict):
        raise RunError(f"{where}: must be a JSON object, not {type(data).__name__}")
    if "status" not in data:
        raise RunError(f"{where}: status: missing")
    for key, check in CHECKS.items():
        why = check(data.get(key))
        if why:
            raise RunError(f"{where}: {key}: {why}")
    known = {k: data.get(k) for k in CHECKS}
    known["tags"] = list(known["tags"] or [])
    return Meta(**known, raw=data)


def read_meta(run_dir: Path) -> Meta:
    """The run's meta.json, checked; RunError `meta.json: ...` saying what is wrong."""
    path = Path(run_dir) / "meta.json"
    try:
        data = read_regular(path, META_MAX_BYTES)
    except FileNotFoundError:
        raise RunError("meta.json: missing") from None
    except NotRegular:
        raise RunError("meta.json: not a regular file") from None
    except TooLarge:
        raise RunError(f"meta.json: larger than {META_MAX_BYTES >> 20} MiB (not a trainer's)") from None
    except (OSError, ValueError) as e:
        raise RunError(f"meta.json: unreadable ({os_reason(e)})") from None
    try:
        parsed = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RunError(f"meta.json: not valid JSON ({str(e)[:120]})") from None
    return check_meta(parsed)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")
