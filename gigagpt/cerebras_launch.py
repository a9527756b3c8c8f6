"""Starting the Cerebras backend from this environment: its SDK lives in its own (CPython 3.11,
torch 2.4; settings file [python] cerebras, `gigagpt env cerebras`), whose interpreter runs
`python -m gigagpt.cerebras` with this checkout importable. No torch here."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from gigagpt.store.files import RunError


def launch_cerebras(cfg, argv: list[str], source: str = "") -> int:
    """Replace this process (same pid: signals and the dashboard see the trainer) with the SDK's
    Python running gigagpt.cerebras. A missing cluster setting is reported here, before the SDK starts."""
    from gigagpt.settings import check_cluster

    if cfg is not None:
        check_cluster(cfg, source)
    python = sdk_python()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [python, "-m", "gigagpt.cerebras", *argv], cerebras_env())


def sdk_python() -> str:
    """The SDK environment's interpreter, said on stderr before it runs when a settings file names
    it: a gigagpt.toml in the current directory could name any program."""
    from gigagpt.settings import cerebras_python, settings, settings_path

    python = str(cerebras_python())
    if settings().get("python", {}).get("cerebras"):
        print(f"gigagpt: running the Cerebras SDK's Python {python} (named in {settings_path()}: [python] cerebras)",
              file=sys.stderr, flush=True)
    return python


def cerebras_env() -> dict:
    """This environment, with this checkout importable by the SDK's Python (which has no gigagpt)."""
    from gigagpt.config import REPO

    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def cerebras_export(mdl: Path) -> Path:
    """A Cerebras checkpoint (cstorch.save: HDF5) as a torch.save file in the cache, for sampling."""
    import hashlib
    import subprocess

    from gigagpt.settings import cache_dir

    key = hashlib.sha256(f"{mdl.resolve()}|{mdl.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_dir() / "cerebras-export" / f"{key}.pt"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sdk_python(), "-m", "gigagpt.cerebras", "export", str(mdl), "--run-dir", str(out)],
                              env=cerebras_env(), capture_output=True, text=True)
        if proc.returncode:
            raise RunError(f"{mdl}: could not read it with the Cerebras SDK: {proc.stderr.strip()[-500:]}")
    return out
