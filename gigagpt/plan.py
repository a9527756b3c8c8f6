"""Pure arithmetic about a model config: parameters, FLOPs, memory, device peaks.

No torch import: the dashboard shows these numbers for 175b instantly.
"""
from __future__ import annotations

from gigagpt.config import Config, ModelConfig

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


def param_count(m: ModelConfig) -> int:
    """Exact number of parameters, LM head tied to the token embedding (counted once)."""
    d, b = m.n_embd, 1 if m.bias else 0
    layer_norm = d + b * d
    attn = d * 3 * d + b * 3 * d + d * d + b * d
    mlp = d * 4 * d + b * 4 * d + 4 * d * d + b * d
    block = 2 * layer_norm + attn + mlp
    return m.vocab_size * d + m.block_size * d + m.n_layer * block + layer_norm


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


def activation_bytes(cfg: Config, world: int = 1, checkpointing: bool | None = None) -> int:
    """Activations saved for backward in one micro-step of one process, plus the logits.

    Counted from what our forward keeps (bf16 autocast: the fp32 residual stream and LayerNorms,
    bf16 matmul inputs and outputs; SDPA keeps q, k, v, out and never the s*s matrix):
    44 bytes per token per width unit per layer in bf16, 64 in fp32. Activation checkpointing
    keeps each block's input (4) and one block's full set during its recompute. The logits cost
    bytes per token per vocabulary entry: eager 12.5 (bf16 and fp32 copies, log-softmax, their
    gradients); compiled, where the loss is fused, 1.5 in bf16 and 4 in fp32. These last figures
    were fitted to measured CPU peaks (bench/plan_memory.py); at a 50k vocabulary they dominate
    small models.
    """
    m, t = cfg.model, cfg.train
    bf16 = t.dtype == "bfloat16"
    ckpt = t.activation_checkpointing if checkpointing is None else checkpointing
    tokens = micro_batch(cfg, world) * m.block_size
    per_layer = (44 if bf16 else 64) * tokens * m.n_embd
    if m.attention == "math":  # scores, softmax (fp32) and probabilities per head
        per_layer += tokens * m.block_size * m.n_head * (10 if bf16 else 12)
    layers = m.n_layer * 4 * tokens * m.n_embd + per_layer if ckpt else m.n_layer * per_layer
    logits = (1.5 if bf16 else 4) if t.compile else 12.5
    return int(layers + 12 * tokens * m.n_embd + logits * tokens * m.vocab_size)


# Fitted to measured CPU peaks (bench/plan_memory.py): kernel libraries' workspaces and thread
# buffers in any training process, and torch.compile's own memory on top when it is on.
RUNTIME_WORKSPACE = 64 * 2**20
COMPILE_WORKSPACE = 100 * 2**20


def memory_estimate(cfg: Config, world: int = 1, strategy: str = "none",
                    checkpointing: bool | None = None) -> dict:
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
        gathered = 2 * block_params(m) + (m.vocab_size + m.block_size) * m.n_embd
        out["buffers"] = (half or 4) * gathered * 2  # gathered weights and their unsharded grads
    else:
        out["buffers"] = half * n + (4 * n if strategy == "ddp" else 0)
    out["activations"] = activation_bytes(cfg, world, checkpointing)
    out["buffers"] += RUNTIME_WORKSPACE + (COMPILE_WORKSPACE if cfg.train.compile else 0)
    out["total"] = sum(out.values())
    return out


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def human_bytes(n: float) -> str:
    for div, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.3g} {suffix}"
    return f"{n:.0f} B"
