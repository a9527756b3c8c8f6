"""A prepared dataset as the trainer reads it (gigagpt/prepare.py writes it): where a name
points, which names the data root holds, and a dataset's token counts and vocabulary. Its
meta.json may come from elsewhere: checked."""
from __future__ import annotations

import json
import os
from pathlib import Path

from gigagpt.config import ConfigError, check_value, show
from gigagpt.settings import data_root
from gigagpt.store.files import NotRegular, TooLarge, read_regular, user_path


def resolve_dataset(name: str) -> Path:
    """A dataset is a directory path, or a name under the data root."""
    p = user_path(name)
    if p.is_dir() or os.sep in name or name.startswith("."):
        return p
    return data_root() / name


DATASET_META_MAX_BYTES = 1 << 20


def dataset_info(name: str, source: str = "<config>") -> dict:
    """Token counts of a prepared dataset, from the .bin sizes (the truth) and meta.json (its
    vocabulary size; checked: a dataset may come from elsewhere)."""
    where = f"{source}: data.dataset = {show(name)}"
    check_value(source, "data.dataset", name, str)
    try:
        path = resolve_dataset(name)
        missing = [f for f in ("train.bin", "val.bin") if not (path / f).is_file()]
        if missing:
            raise ConfigError(f"{where}: no prepared dataset at {path} (missing {', '.join(missing)}); "
                              "prepare one with `gigagpt data prepare shakespeare`")
        sizes = {s: (path / f"{s}.bin").stat().st_size for s in ("train", "val")}
        odd = [s for s, n in sizes.items() if n % 2]
        if odd:  # np.uint16 tokens: a torn or foreign file
            raise ConfigError(f"{where}: {path / f'{odd[0]}.bin'} has an odd size ({sizes[odd[0]]} bytes): not 2-byte tokens")
        tokens = {s: n // 2 for s, n in sizes.items()}
        try:
            meta = json.loads(read_regular(path / "meta.json", DATASET_META_MAX_BYTES))
        except FileNotFoundError:  # optional: the .bin files are the dataset
            meta = {}
    except ConfigError:
        raise
    except (NotRegular, TooLarge) as e:
        raise ConfigError(f"{path / 'meta.json'}: not a dataset's meta.json ({e.strerror})") from None
    except OSError as e:
        raise ConfigError(f"{where}: {e.strerror or e}") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{path / 'meta.json'}: not a dataset's meta.json ({e})") from None
    vocab = meta.get("vocab_size", 0) if isinstance(meta, dict) else None
    if not (isinstance(vocab, int) and not isinstance(vocab, bool) and 0 <= vocab <= 1 << 20):
        raise ConfigError(f"{path / 'meta.json'}: vocab_size = {show(vocab)}: must be an integer in [0, 1048576]")
    return {"path": path, "tokens": tokens, "vocab_size": vocab, "meta": meta}


def dataset_names() -> list[str]:
    """The datasets under the data root: its directories that hold a meta.json."""
    root = data_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if not p.name.startswith(".") and (p / "meta.json").is_file())
