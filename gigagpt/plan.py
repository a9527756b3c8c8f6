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


def memory_estimate(cfg: Config, bytes_per_act: int | None = None) -> dict:
    """Bytes for one device, no sharding: fp32 weights, grads, AdamW (2 states), activations.

    Activations follow Korthikanti et al. (2022) for one micro-batch without recomputation:
    per layer s*b*h*(34 + 5*a*s/h) bytes at 2 bytes/element, plus the logits (fp32 and their
    gradient) which dominate small models with a 50k vocabulary.
    """
    m, t = cfg.model, cfg.train
    n = param_count(m)
    s, b, h, a = m.block_size, t.batch_size, m.n_embd, m.n_head
    half = bytes_per_act or (2 if t.dtype == "bfloat16" else 4)
    per_layer = s * b * h * (34 + 5 * a * s / h) * half / 2
    # SDPA never materialises the s*s attention matrix; only the math path does.
    if m.attention == "sdpa":
        per_layer = s * b * h * 34 * half / 2
    logits = s * b * m.vocab_size * (half + 4 + 4)
    out = {
        "weights": 4 * n, "grads": 4 * n, "optimizer": 8 * n,
        "activations": int(m.n_layer * per_layer + logits),
    }
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
