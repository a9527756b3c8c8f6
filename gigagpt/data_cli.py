"""`gigagpt data prepare|list|show|fetch-tokenizer`: the command line of gigagpt/prepare.py."""
from __future__ import annotations

import json

from gigagpt.config import ConfigError
from gigagpt.corpus import SOURCES_HELP, DataError
from gigagpt.dataset import dataset_info, dataset_names
from gigagpt.prepare import prepare
from gigagpt.settings import data_root
from gigagpt.tokenizer import RANKS_FILE, fetch_tokenizer, get_tokenizer


def cmd_prepare(args) -> int:
    out, meta = prepare(args.source, args.out, args.val_fraction, args.workers, args.text_field,
                        args.skip_bad, args.force)
    t, d = meta["tokens"], meta["documents"]
    rate = (t["train"] + t["val"]) / max(meta["seconds"], 1e-9)
    print(f"prepared {out}: train {t['train']:,} tokens ({d['train']:,} documents), "
          f"val {t['val']:,} tokens ({d['val']:,} documents) in {meta['seconds']:.1f} s "
          f"({rate / 1e6:.2f}M tokens/s, {meta['workers']} workers)")
    return 0


def cmd_list(args) -> int:
    names = dataset_names()
    if not names:
        print(f"no datasets in {data_root()} (prepare one: gigagpt data prepare shakespeare)")
        return 0
    print(f"{'NAME':<20} {'TRAIN TOKENS':>14} {'VAL TOKENS':>12} {'DOCUMENTS':>10}  SOURCE")
    for name in names:
        info = dataset_info(name)
        docs = info["meta"].get("documents", {})
        n_docs = sum(docs.values()) if isinstance(docs, dict) else "?"
        print(f"{name:<20} {info['tokens']['train']:>14,} {info['tokens']['val']:>12,} "
              f"{n_docs:>10,}  {info['meta'].get('source', '?')}")
    return 0


def cmd_show(args) -> int:
    try:
        info = dataset_info(args.name, source="data show")
    except ConfigError as e:
        raise DataError(str(e)) from None
    meta = info["meta"]
    print(f"path: {info['path']}")
    for split in ("train", "val"):
        held, said = info["tokens"][split], meta.get("tokens", {}).get(split)
        note = "" if said in (None, held) else f" (meta.json says {said:,}: stale meta.json?)"
        print(f"{split}: {held:,} tokens, {meta.get('documents', {}).get(split, '?'):,} "
              f"documents{note}")
    for key, value in meta.items():
        if key not in ("tokens", "documents"):
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


def cmd_fetch_tokenizer(args) -> int:
    path = fetch_tokenizer()
    enc = get_tokenizer()
    print(f"GPT-2 tokenizer ready: {path} (sha256 checked; n_vocab {enc.n_vocab})")
    return 0


def add_data_parser(subparsers) -> None:
    """Register `data prepare|list|show|fetch-tokenizer` on the CLI's subparsers."""
    data = subparsers.add_parser("data", help="prepare and inspect datasets, fetch the tokenizer")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = sub.add_parser("prepare", help="tokenize a corpus into data/NAME")
    p.add_argument("source", metavar="SOURCE", help=SOURCES_HELP)
    p.add_argument("--out", help="dataset directory, or a name under the data root "
                   "(default: data/NAME from the source)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of tokens for val.bin (default 0.1; openwebtext 0.0005)")
    p.add_argument("--workers", type=int, default=None,
                   help="tokenizer processes (default: all cores)")
    p.add_argument("--text-field", default="text", help="the text field of .jsonl records")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip .jsonl lines that are not JSON or lack the field, and go on")
    p.add_argument("--force", action="store_true", help="replace an existing dataset")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("list", help="prepared datasets with token counts")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="one dataset's meta.json and token counts")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("fetch-tokenizer",
                       help=f"store GPT-2's ranks file ({RANKS_FILE}) from a package index")
    p.set_defaults(func=cmd_fetch_tokenizer)
