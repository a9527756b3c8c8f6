"""The code-line table of the README, counted like gigaGPT counts its 565 lines: cloc's code lines
(no blanks, no comments, no docstrings). Needs cloc (Debian: apt-get install cloc).

    python bench/loc.py
"""
import csv
import io
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = ["gigagpt/model.py", "gigagpt/fused_loss.py", "gigagpt/train.py", "gigagpt/guard.py", "gigagpt/batches.py",
        "gigagpt/checkpoint.py"]
SCALE = ["gigagpt/device.py", "gigagpt/dist.py", "gigagpt/torchrun.py", "gigagpt/safe_dcp.py", "gigagpt/config.py",
         "gigagpt/settings.py", "gigagpt/dataset.py"]
TOOLS = ["gigagpt/cerebras.py", "gigagpt/cerebras_sdk.py", "gigagpt/cerebras_launch.py", "gigagpt/plan.py", "gigagpt/cli.py",
         "gigagpt/runs_cli.py", "gigagpt/queue_cli.py", "gigagpt/runner.py", "gigagpt/sample.py", "gigagpt/listing.py",
         "gigagpt/data_cli.py", "gigagpt/corpus.py", "gigagpt/encode_workers.py", "gigagpt/prepare.py",
         "gigagpt/tokenizer.py", "gigagpt/sdist.py"]
HF = ["gigagpt/hf.py", "gigagpt/hf_source.py", "gigagpt/hf_export.py"]


def main():
    out = subprocess.run(["cloc", "--quiet", "--by-file", "--csv", "gigagpt/", "app/"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    loc = {row[1]: int(row[4]) for row in csv.reader(io.StringIO(out)) if len(row) > 4 and row[1].endswith(".py")}
    app = [f for f in loc if f.startswith("app/")]
    store = [f for f in loc if f.startswith("gigagpt/store/")]
    counted = set(CORE + SCALE + TOOLS + HF + store)
    missed = [f for f in loc if f.startswith("gigagpt/") and f not in counted and loc[f] > 5]
    assert not missed, f"not in a row of the table: {missed}"  # a new module must be counted somewhere

    def files(names):
        return ", ".join(f"`{Path(f).name}` {loc[f]}" for f in names if f in loc)

    print("| part | files | code lines |\n|---|---|---|")
    print(f"| model + training loop | {files(CORE)} | **{sum(loc.get(f, 0) for f in CORE)}** (gigaGPT's model + train: 352) |")
    print(f"| + many devices, configs | {files(SCALE)} | {sum(loc.get(f, 0) for f in CORE + SCALE)} in all |")
    print(f"| run store (`gigagpt/store/`, no torch) | {files(sorted(store))} | {sum(loc[f] for f in store)} |")
    print(f"| Cerebras backend, planner, CLI, data | {files(TOOLS)} | {sum(loc[f] for f in TOOLS)} |")
    print(f"| Hugging Face interop | {files(HF)} | {sum(loc[f] for f in HF)} |")
    print(f"| dashboard (`app/`) | {len(app)} files | {sum(loc[f] for f in app)} |")


if __name__ == "__main__":
    main()
