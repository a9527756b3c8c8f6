"""`gigagpt sample`: text from a run's newest checkpoint that loads, streamed as it is generated."""
from __future__ import annotations

import codecs
import sys
from pathlib import Path

import psutil
import torch

from gigagpt.cerebras_launch import cerebras_export
from gigagpt.checkpoint import brief, load
from gigagpt.config import ConfigError, from_dict, validate
from gigagpt.device import pick_device
from gigagpt.model import GPT
from gigagpt.plan import param_count
from gigagpt.store.checkpoints import Unloadable, newest_loadable, not_files
from gigagpt.store.files import RunError
from gigagpt.store.layout import checkpoint_step, checkpoints
from gigagpt.tokenizer import get_tokenizer


def load_model(run_dir: Path, step: int | None = None) -> tuple[Path, GPT]:
    """(checkpoint, model) of the newest checkpoint that loads, or of the one at `step`; RunError
    when none does."""
    if not checkpoints(run_dir):
        raise RunError(f"run {run_dir}: has no checkpoint yet")

    def attempt(path: Path):
        """The model of one checkpoint; Unloadable when it cannot be read."""
        sharded = path.suffix == ".dcp"
        try:
            src = cerebras_export(path) if path.suffix == ".mdl" else path / "extra.pt" if sharded else path
        except RunError as e:
            raise Unloadable(str(e)) from None
        state = load(src, keys=("config",) if sharded else ("model", "config"))
        try:
            cfg = from_dict(state["config"], path.name)
            validate(cfg, path.name, check_data=False)
        except ConfigError as e:
            raise Unloadable(f"its config: {e}") from None
        need, have = 4 * param_count(cfg.model), psutil.virtual_memory().total
        if need > have:  # the weights alone (fp32) would not fit: refused before allocating them
            raise Unloadable(f"its model needs {need / 2**30:,.0f} GiB for its weights; this machine has {have / 2**30:,.0f} GiB")
        model = GPT(cfg.model)
        try:
            if sharded:
                from gigagpt.dist import load_full_model_state

                load_full_model_state(path, model)
            else:
                model.load_state_dict(state["model"])
        except Unloadable:  # refused as unsafe, or its .metadata unreadable: says so itself
            raise
        except Exception as e:  # noqa: BLE001 - a damaged or foreign checkpoint
            raise Unloadable(f"its weights do not fit its config ({brief(e)})") from None
        with torch.no_grad():  # finite weights can still overflow: sampling would fail on NaN probabilities
            if not torch.isfinite(model(torch.zeros(1, 1, dtype=torch.long))).all():
                raise Unloadable("its outputs are not finite (weights that overflow)")
        return model

    if step is not None:  # that checkpoint or nothing (export-hf --step N)
        path = next((p for p in checkpoints(run_dir) if checkpoint_step(p) == step), None)
        if path is None:
            raise RunError(f"run {run_dir}: no checkpoint of step {step}; it has "
                           + ", ".join(p.name for p in checkpoints(run_dir)))
        try:
            problem = not_files(path)  # a FIFO or a loop where a file belongs: never opened
            if problem:
                raise Unloadable(problem)
            return path, attempt(path)
        except Unloadable as e:
            raise RunError(f"run {run_dir}: {path.name}: {e}") from None
    path, model, skipped = newest_loadable(run_dir, attempt)
    why = "; ".join(f"{p.name}: {r}" for p, r in skipped)
    if path is None:
        raise RunError(f"run {run_dir}: no checkpoint loads ({why})")
    if skipped:
        print(f"gigagpt: sampling from {path.name}; skipped {why}", file=sys.stderr, flush=True)
    return path, model


def stream_samples(path: Path, model: GPT, prompt: str, num_samples: int, max_new_tokens: int,
                   temperature: float, top_k: int, seed: int, device_name: str) -> int:
    """Write num_samples continuations of prompt to stdout as UTF-8, token by token."""
    device = pick_device(device_name)
    model.to(device).eval()
    enc = get_tokenizer()
    eot = enc.eot_token
    ids = enc.encode_ordinary(prompt) if prompt else [eot]
    if max(ids) >= model.cfg.vocab_size:  # a model trained on a smaller vocabulary than GPT-2's
        raise RunError(f"{path.name}: its model has {model.cfg.vocab_size} token ids, and the GPT-2 "
                       f"tokenizer gives the prompt id {max(ids)}; it cannot be sampled with this tokenizer")
    gen = torch.Generator(device=device).manual_seed(seed)
    out = sys.stdout.buffer  # UTF-8 whatever the locale; bad bytes (a prompt's too) as U+FFFD

    def write(text: str):
        out.write(text.encode("utf-8", "replace"))
        out.flush()

    for i in range(num_samples):
        # streamed as it is generated; a character split across tokens waits for its last byte
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        write(("" if i == 0 else "\n" + "-" * 40 + "\n") + prompt)

        def show(token, utf8=utf8):  # this sample's decoder
            if token < enc.n_vocab:  # ids past the tokenizer's (vocab padding) print nothing
                write(utf8.decode(enc.decode_single_token_bytes(token)))

        model.generate(torch.tensor([ids], device=device), max_new_tokens, temperature,
                       top_k, eot=eot, generator=gen, on_token=show)
        write(utf8.decode(b"", final=True) + "\n")
    return 0
