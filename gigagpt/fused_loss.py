"""Tied LM head + mean cross-entropy, chunked over rows: the N x V logits never exist at once.

Liger-Kernel's fused linear cross-entropy, on the CPU: each chunk's logits in the compute dtype,
their softmax (fp32 inside the kernel), an fp32 log-sum-exp, and, when gradients are wanted,
d loss / d h and d loss / d W computed in the forward pass while the chunk is at hand. The loss is
the last op, so backward only scales them by the incoming scalar.
"""
from __future__ import annotations

import torch

from gigagpt.plan import loss_chunk_rows


def chunk_loss(h, w, y, vocab):
    """Summed cross-entropy of logits h @ w.T against y, and its gradient with respect to those
    logits (softmax minus one-hot), in h's dtype. Columns from vocab on (w's padded rows) get -inf:
    no probability and no gradient, as if w had only vocab rows."""
    x = h @ w.t()
    if vocab < x.size(1):
        x[:, vocab:] = float("-inf")
    yc = y[:, None]
    p = torch.softmax(x, dim=1)
    # The largest probability is exp(0) / sum: log-sum-exp = max - log(its probability), which in bf16
    # is rounded (a row's loss within 2^-8): an fp32 pass over the chunk would cost more than that is worth.
    lse = x.amax(1, keepdim=True).float() - p.amax(1, keepdim=True).float().log()
    log_py = x.gather(1, yc).float() - lse
    rows = torch.arange(y.size(0), device=y.device)
    p.index_put_((rows, y), (log_py.exp() - 1).squeeze(1).to(p.dtype))  # scatter_: ~40 ms a chunk on CPU
    return -log_py.sum(), p


def add_into(acc: torch.Tensor, part: torch.Tensor, rows: int = 4096) -> torch.Tensor:
    """acc += part (of another dtype). Eager CPU kernels cast all of part first, into a fresh
    buffer (6x slower for the head's gradient); slices keep that copy small. Inductor fuses it."""
    if torch.compiler.is_compiling() or acc.device.type != "cpu":
        return acc.add_(part)
    for i in range(0, acc.size(0), rows):
        acc[i:i + rows].add_(part[i:i + rows])
    return acc


class LinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i @ W.T, y_i) and its gradients, chunk by chunk (see the module's doc)."""

    @staticmethod
    def forward(ctx, h, w, y, dtype, chunk, vocab):
        n, want_h, want_w = h.size(0), ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(h.device.type, enabled=False):  # the dtypes below are the ones meant
            hc, wc = h.to(dtype), w.to(dtype)
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            grad_h = torch.empty_like(h) if want_h else None
            grad_w = None
            for s in range(0, n, chunk):
                e = min(n, s + chunk)
                loss, g = chunk_loss(hc[s:e], wc, y[s:e], vocab)
                total += loss
                if want_h:
                    grad_h[s:e] = g @ wc
                if want_w:  # each chunk's product rounded to dtype, summed in fp32
                    part = g.t() @ hc[s:e]
                    grad_w = part.float() if grad_w is None else add_into(grad_w, part)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n, ctx.w_dtype = n, w.dtype  # FSDP's bf16 gathered weight wants a bf16 gradient
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        return (None if grad_h is None else grad_h * scale,
                None if grad_w is None else (grad_w * scale).to(ctx.w_dtype), None, None, None, None)


def linear_cross_entropy(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, chunk: int | None = None,
                         vocab: int | None = None) -> torch.Tensor:
    """F.cross_entropy((h @ w[:vocab].T).float(), y) for h (N, d), w (V, d), y (N,) in the ambient
    autocast dtype (bf16 under bf16 autocast, else h's dtype), never holding more than chunk x V
    logits (default: gigagpt.plan.loss_chunk_rows). w's rows past vocab (default: none) are padding,
    multiplied but masked. Every target counts (no ignore_index)."""
    kind = h.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else h.dtype
    if not torch.is_grad_enabled():  # evaluation: forward would still see needs_input_grad
        h, w = h.detach(), w.detach()
    return LinearCrossEntropy.apply(h, w, y, dtype, chunk or loss_chunk_rows(h.size(1)), vocab or w.size(0))
