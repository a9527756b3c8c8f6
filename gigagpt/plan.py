"""Pure arithmetic about a model config: parameters, FLOPs, memory, device peaks.

No torch import: the dashboard shows these numbers for 175b instantly.
"""
from __future__ import annotations

from gigagpt.config import Config, ConfigError, ModelConfig

# Dense bf16 peak FLOP/s (tensor cores, no sparsity) and memory in GiB, by name.
# The MFU denominator for CUDA devices; matched against torch.cuda.get_device_name().
DEVICE_PEAKS = {
    "A100-40GB": (312e12, 40), "A100-80GB": (312e12, 80), "H100": (989e12, 80),
    "H100-PCIe": (756e12, 80), "H200": (989e12, 141), "B200": (2250e12, 180),
    "MI300X": (1307e12, 192), "L4": (121e12, 24), "A10": (125e12, 24),
    "RTX 4090": (165e12, 24), "V100": (125e12, 32),
}


def peak_for_device_name(name: str) -> float | None:
    """Best match of a CUDA device name ('NVIDIA H100 80GB HBM3') in DEVICE_PEAKS."""
    name = name.upper()
    if "A100" in name:
        return DEVICE_PEAKS["A100-80GB"][0]
    if "H100" in name and "PCIE" in name:
        return DEVICE_PEAKS["H100-PCIe"][0]
    for key in sorted(DEVICE_PEAKS, key=len, reverse=True):
        if key.split("-")[0].upper() in name:
            return DEVICE_PEAKS[key][0]
    return None


def padded_vocab(m: ModelConfig) -> int:
    """Rows of the token embedding and the tied LM head: vocab_size rounded up to a multiple of
    pad_vocab_to (0 or 1: vocab_size itself). The extra ids are never inputs, targets or samples."""
    step = max(m.pad_vocab_to, 1)
    return -(-m.vocab_size // step) * step


def param_count(m: ModelConfig) -> int:
    """Exact number of parameters, LM head tied to the token embedding (counted once, padded rows too)."""
    d, b = m.n_embd, 1 if m.bias else 0
    layer_norm = d + b * d
    attn = d * 3 * d + b * 3 * d + d * d + b * d
    mlp = d * 4 * d + b * 4 * d + 4 * d * d + b * d
    block = 2 * layer_norm + attn + mlp
    return padded_vocab(m) * d + m.block_size * d + m.n_layer * block + layer_norm


def flops_per_token(m: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token, nanoGPT's convention: 6N + 12 * n_layer * n_embd * seq_len."""
    return 6 * param_count(m) + 12 * m.n_layer * m.n_embd * (seq_len or m.block_size)


def tokens_per_step(cfg: Config, world_size: int = 1) -> int:
    return cfg.train.batch_size * cfg.train.grad_accum * cfg.model.block_size * world_size


def block_params(m: ModelConfig) -> int:
    d, b = m.n_embd, 1 if m.bias else 0
    return 2 * (d + b * d) + 4 * d * d + b * 4 * d + 8 * d * d + b * 5 * d


def micro_batch(cfg: Config, world: int) -> int:
    """Sequences one process runs at once: batch_size split across the processes (rounded up:
    a planner's answer for a world size that does not divide it)."""
    return -(-cfg.train.batch_size // world)


def loss_chunk_rows(n_embd: int) -> int:
    """Rows of logits gigagpt.fused_loss computes at once: a chunk's logits are then about twice
    the head's weight, which it already keeps in several copies, and each chunk's share of the
    weight's gradient costs no more memory traffic than its logits."""
    return 2 * n_embd


def activation_bytes(cfg: Config, world: int = 1, checkpointing: bool | None = None, fused_loss: bool = True) -> int:
    """Activations saved for backward in one micro-step of one process, plus the head and loss.

    Counted from what our forward keeps (bf16 autocast: the fp32 residual stream and LayerNorms,
    bf16 matmul inputs and outputs; SDPA keeps q, k, v, out and never the s*s matrix):
    44 bytes per token per width unit per layer in bf16, 64 in fp32. Activation checkpointing
    keeps each block's input (4) and one block's full set during its recompute. The fused head +
    loss (gigagpt.fused_loss) holds one chunk's logits and softmax (4 bytes an entry in bf16, 8 in
    fp32) and the head's fp32 gradient with one chunk's share of it. The plain path (fused_loss
    False) holds all the logits, at bytes per token per vocabulary entry: eager 12.5 (bf16 and
    fp32 copies, log-softmax, their gradients); compiled, where the loss is fused, 1.5 in bf16 and
    4 in fp32; fitted to measured CPU peaks (bench/plan_memory.py): at a 50k vocabulary they
    dominate small models.
    """
    m, t, vocab = cfg.model, cfg.train, padded_vocab(cfg.model)
    bf16 = t.dtype == "bfloat16"
    ckpt = t.activation_checkpointing if checkpointing is None else checkpointing
    tokens = micro_batch(cfg, world) * m.block_size
    per_layer = (44 if bf16 else 64) * tokens * m.n_embd
    if m.attention == "math":  # scores, softmax (fp32) and probabilities per head
        per_layer += tokens * m.block_size * m.n_head * (10 if bf16 else 12)
    layers = m.n_layer * 4 * tokens * m.n_embd + per_layer if ckpt else m.n_layer * per_layer
    if fused_loss:  # a chunk's logits and softmax; the head's fp32 gradient and a chunk's share of it
        rows = min(tokens, loss_chunk_rows(m.n_embd))
        head = (4 if bf16 else 8) * rows * vocab + (6 if bf16 else 8) * vocab * m.n_embd
    else:
        head = ((1.5 if bf16 else 4) if t.compile else 12.5) * tokens * vocab
    return int(layers + 12 * tokens * m.n_embd + head)


# Fitted to measured CPU peaks (bench/plan_memory.py): kernel libraries' workspaces and thread
# buffers in any training process, with the freed buffers glibc's malloc keeps (35-77 MiB of it:
# tiny and nano peak that much lower under MALLOC_MMAP_THRESHOLD_=131072), and torch.compile's
# own memory on top when it is on (less what its graphs save over eager).
RUNTIME_WORKSPACE = 112 * 2**20
COMPILE_WORKSPACE = 80 * 2**20


def memory_estimate(cfg: Config, world: int = 1, strategy: str = "none",
                    checkpointing: bool | None = None, fused_loss: bool = True) -> dict:
    """Peak bytes on one device while training: strategy "none" (one process), "ddp" or "fsdp".

    fp32 master weights, fp32 gradients and AdamW's two fp32 states (16 bytes per parameter);
    FSDP divides them by the world size but gathers bf16 (or fp32) copies of about two blocks and
    the embeddings at a time. Autocast keeps a bf16 copy of the weights during forward; DDP keeps
    gradient buckets as large as the gradients.
    """
    m = cfg.model
    n = param_count(m)
    half = 2 if cfg.train.dtype == "bfloat16" else 0
    shard = world if strategy == "fsdp" else 1
    out = {"weights": 4 * n // shard, "grads": 4 * n // shard, "optimizer": 8 * n // shard}
    if strategy == "fsdp":
        gathered = 2 * block_params(m) + (padded_vocab(m) + m.block_size) * m.n_embd
        out["buffers"] = (half or 4) * gathered * 2  # gathered weights and their unsharded grads
    else:
        out["buffers"] = half * n + (4 * n if strategy == "ddp" else 0)
    out["activations"] = activation_bytes(cfg, world, checkpointing, fused_loss)
    out["buffers"] += RUNTIME_WORKSPACE + (COMPILE_WORKSPACE if cfg.train.compile else 0)
    out["total"] = sum(out.values())
    return out


def human(n: float, unit: str = "") -> str:
    """1.08e12 -> '1.08T'. Counts of parameters read better with human_count (B, not G)."""
    for div, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def human_count(n: float | None, digits: int = 4) -> str:
    """174_604_259_328 -> '174.6B' (parameters, tokens, tokens/s); None -> '–'."""
    if n is None:
        return "–"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.{digits}g}{suffix}"
    return f"{n:.0f}"


def human_bytes(n: float) -> str:
    for div, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.3g} {suffix}"
    return f"{n:.0f} B"


# ---------------------------------------------------------------------------- the planner

USABLE = 0.9  # of a device's memory: the rest goes to the CUDA context, NCCL and fragmentation
STRATEGIES = (("none", False), ("ddp", False), ("fsdp", False), ("fsdp", True))


def strategy_name(strategy: str, checkpointing: bool) -> str:
    return strategy + (" + act. ckpt" if checkpointing else "")


def fits(cfg: Config, world: int, strategy: str, device_bytes: float, checkpointing: bool = False) -> bool:
    return memory_estimate(cfg, world, strategy, checkpointing)["total"] <= USABLE * device_bytes


def valid_world(cfg: Config, world: int) -> bool:
    """The trainer splits batch_size (or else grad_accum) evenly across processes."""
    return cfg.train.batch_size % world == 0 or cfg.train.grad_accum % world == 0


def check_world(cfg: Config, world: int) -> None:
    if not valid_world(cfg, world):
        raise ConfigError(f"train.batch_size = {cfg.train.batch_size} and train.grad_accum = "
                          f"{cfg.train.grad_accum}: one must be divisible by the {world} processes")


def choose_parallel(cfg: Config, world: int, device_bytes: float | None) -> str:
    """train.parallel, where "auto" means DDP when a full replica fits each device, else FSDP.
    device_bytes: what one process may use (None: unknown, take DDP)."""
    if world == 1:
        return "none"
    if cfg.train.parallel != "auto":
        return cfg.train.parallel
    if device_bytes is None or fits(cfg, world, "ddp", device_bytes):
        return "ddp"
    return "fsdp"


def smallest_world(cfg: Config, device_bytes: float, strategy: str, checkpointing: bool = False,
                   limit: int = 1 << 20) -> int | None:
    """Fewest devices on which `strategy` fits and that split the batch evenly (memory never
    grows with more devices: binary search, then up to the next valid world size)."""
    if strategy == "none":
        return 1 if fits(cfg, 1, "none", device_bytes, checkpointing) else None
    if not fits(cfg, limit, strategy, device_bytes, checkpointing):
        return None
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(cfg, mid, strategy, device_bytes, checkpointing):
            hi = mid
        else:
            lo = mid + 1
    while lo <= limit and not valid_world(cfg, lo):
        lo += 1
    return lo if lo <= limit else None


def step_seconds(cfg: Config, world: int, peak: float, mfu: float) -> float:
    return flops_per_token(cfg.model) * tokens_per_step(cfg) / (world * peak * mfu)


def best_plan(cfg: Config, device_bytes: float) -> tuple[int, str, bool] | None:
    """The cheapest way to fit: fewest devices, preferring no sharding and no recomputation."""
    options = []
    for strategy, ckpt in STRATEGIES:
        n = smallest_world(cfg, device_bytes, strategy, ckpt)
        if n is not None:
            options.append((n, STRATEGIES.index((strategy, ckpt)), strategy, ckpt))
    if not options:
        return None
    n, _, strategy, ckpt = min(options)
    return n, strategy, ckpt


def plan(cfg: Config, devices: int = 1, device_bytes: float | None = None, mfu: float = 0.4) -> dict:
    """Everything `gigagpt plan` prints, as plain data (also its --json output)."""
    t, m = cfg.train, cfg.model
    out = {
        "params": param_count(m), "vocab_size": m.vocab_size, "vocab_rows": padded_vocab(m),
        "flops_per_token": flops_per_token(m),
        "tokens_per_step": tokens_per_step(cfg), "flops_per_step": flops_per_token(m) * tokens_per_step(cfg),
        "max_steps": t.max_steps, "train_tokens": tokens_per_step(cfg) * t.max_steps,
        "devices": devices, "device_bytes": device_bytes, "usable": USABLE, "mfu": mfu,
        "memory": {}, "smallest": {}, "named_devices": {},
    }
    for strategy, ckpt in STRATEGIES:
        name = strategy_name(strategy, ckpt)
        world = 1 if strategy == "none" else devices
        mem = memory_estimate(cfg, world, strategy, ckpt)
        out["memory"][name] = {**mem, "world": world,
                               "fits": None if device_bytes is None else mem["total"] <= USABLE * device_bytes}
        if device_bytes is not None:
            out["smallest"][name] = smallest_world(cfg, device_bytes, strategy, ckpt)
    if device_bytes is not None:
        best = best_plan(cfg, device_bytes)
        if best:
            n, strategy, ckpt = best
            out["best"] = {**memory_estimate(cfg, n, strategy, ckpt), "world": n,
                           "strategy": strategy_name(strategy, ckpt)}
        out["one_sequence_activations"] = activation_bytes(cfg, t.batch_size, False)
    for dev, (peak, gib) in DEVICE_PEAKS.items():
        best = best_plan(cfg, gib * 2**30)
        row = {"peak_flops": peak, "memory_gib": gib, "min_devices": None}
        if best:
            n, strategy, ckpt = best
            row.update(min_devices=n, strategy=strategy_name(strategy, ckpt),
                       step_seconds=step_seconds(cfg, n, peak, mfu),
                       train_seconds=step_seconds(cfg, n, peak, mfu) * t.max_steps)
        if devices > 1 or best is None or best[0] != devices:
            row["at_devices"] = {"devices": devices, "step_seconds": step_seconds(cfg, devices, peak, mfu),
                                 "train_seconds": step_seconds(cfg, devices, peak, mfu) * t.max_steps}
        out["named_devices"][dev] = row
    return out


def human_seconds(s: float) -> str:
    for div, unit in ((365 * 86400, "years"), (86400, "days"), (3600, "h"), (60, "min"), (1, "s")):
        if s >= div:
            return f"{s / div:.3g} {unit}"
    return f"{s * 1000:.3g} ms"


def format_plan(p: dict, source: str, device_label: str | None) -> str:
    padded = f" (vocabulary padded to {p['vocab_rows']:,} rows)" if p["vocab_rows"] != p["vocab_size"] else ""
    lines = [
        f"{source}: {human_count(p['params'])} parameters{padded}, {human(p['flops_per_token'])}FLOP per token "
        f"(6N + 12*layers*width*seq), {p['tokens_per_step']:,} tokens per step = "
        f"{human(p['flops_per_step'])}FLOP per step",
        f"  {p['max_steps']:,} steps = {human(p['train_tokens'])} tokens to train",
        "",
    ]
    where = f" of {device_label}" if device_label else ""
    usable = f", fits in {100 * p['usable']:.0f}% of {human_bytes(p['device_bytes'])}" if p["device_bytes"] else ""
    lines.append(f"Memory per device with {p['devices']} device{'s' if p['devices'] > 1 else ''}{where}{usable}:")
    head = f"  {'strategy':22s}{'weights':>11s}{'grads':>11s}{'optimizer':>11s}{'buffers':>11s}{'activations':>13s}{'total':>11s}"
    lines.append(head + ("   fits" if p["device_bytes"] else ""))
    for name, mem in p["memory"].items():
        label = f"{name} (1 device)" if mem["world"] == 1 and p["devices"] > 1 else name
        row = f"  {label:22s}" + "".join(f"{human_bytes(mem[k]):>11s}" for k in ("weights", "grads", "optimizer", "buffers"))
        row += f"{human_bytes(mem['activations']):>13s}{human_bytes(mem['total']):>11s}"
        if mem["fits"] is not None:
            row += "   yes" if mem["fits"] else "   no"
        lines.append(row)
    if p["smallest"]:
        lines += ["", f"Fewest devices{where} that fit:"]
        for name, n in p["smallest"].items():
            lines.append(f"  {name:22s}{'never' if n is None else f'{n:,}'}")
        dense = p["memory"]["none"]
        if "best" in p:
            mem = p["best"]
            lines.append(f"  best: {mem['strategy']} on {mem['world']:,}: " + ", ".join(
                f"{k} {human_bytes(mem[k])}" for k in ("weights", "grads", "optimizer", "buffers", "activations"))
                + f" = {human_bytes(mem['total'])}")
        if p["smallest"]["ddp"] is None:
            lines.append(f"  why: a full replica needs {human_bytes(dense['weights'] + dense['grads'] + dense['optimizer'])} "
                         "for fp32 weights, gradients and AdamW state (16 bytes per parameter) before any "
                         "activation; only sharding (FSDP) divides that by the number of devices.")
        if p["smallest"]["fsdp"] is None and "one_sequence_activations" in p:
            lines.append(f"  why: without activation checkpointing one sequence per device keeps "
                         f"{human_bytes(p['one_sequence_activations'])} of activations, more than the device holds.")
    lines += ["", f"Time at {100 * p['mfu']:.0f}% MFU (bf16 dense peak), on the fewest devices that fit:",
              f"  {'device':12s}{'peak':>13s}{'memory':>9s}{'devices':>9s}  {'how':22s}{'per step':>11s}{'to train':>12s}"]
    for dev, row in p["named_devices"].items():
        if row["min_devices"] is None:
            lines.append(f"  {dev:12s}{human(row['peak_flops'], 'FLOP/s'):>13s}{row['memory_gib']:>6d} GB   does not fit")
            continue
        lines.append(f"  {dev:12s}{human(row['peak_flops'], 'FLOP/s'):>13s}{row['memory_gib']:>6d} GB{row['min_devices']:>9,}  "
                     f"{row['strategy']:22s}{human_seconds(row['step_seconds']):>11s}{human_seconds(row['train_seconds']):>12s}")
    return "\n".join(lines)
