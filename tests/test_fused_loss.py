"""The fused, chunked LM head + cross-entropy (gigagpt.fused_loss) against the plain path."""
import functools
import itertools
import sys
from unittest.mock import MagicMock

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from torch.utils._python_dispatch import TorchDispatchMode

from gigagpt.config import ModelConfig, load_config
from gigagpt.fused_loss import linear_cross_entropy
from gigagpt.model import GPT

V = 50257  # GPT-2's vocabulary: not a multiple of anything


def inputs(n, d, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=gen).requires_grad_()
    w = (0.5 * torch.randn(V, d, generator=gen)).requires_grad_()  # logits of a few units: a real softmax
    return h, w, torch.randint(0, V, (n,), generator=gen)


def loss_and_grads(fn, h, w, y, bf16=False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = fn(h, w, y)
    return (loss.detach(), *torch.autograd.grad(loss, (h, w)))


def plain(h, w, y, vocab=None):
    return F.cross_entropy((h @ w[:vocab].t()).float(), y)


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()  # 0 when both are 0 (a vocabulary of 1)


class Largest(TorchDispatchMode):
    """The most elements any op's output had."""

    def __init__(self):
        super().__init__()
        self.numel, self.ops = 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
                self.ops.append((str(func), tuple(t.shape)))
        return out


@pytest.mark.parametrize("n, d, chunk", [(300, 64, 128), (77, 32, 16), (64, 48, 64), (5, 16, 512), (130, 24, 1)])
def test_fp32_matches_the_plain_path(n, d, chunk):
    h, w, y = inputs(n, d)
    exact = loss_and_grads(plain, h.detach().double().requires_grad_(), w.detach().double().requires_grad_(), y)
    ref = loss_and_grads(plain, h, w, y)
    got = loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk=chunk), h, w, y)
    assert got[0].dtype == torch.float32 and got[1].dtype == h.dtype and got[2].dtype == w.dtype
    assert abs(got[0] - ref[0]) / ref[0] < 1e-6
    # Sums over 50257 terms in fp32: the plain path itself is up to 1.5e-5 from fp64 here.
    for i in (1, 2):
        assert rel(got[i], ref[i]) < 5e-5 and rel(got[i].double(), exact[i]) < 5e-5


@pytest.mark.parametrize("n, d, chunk", [(300, 64, 128), (200, 32, 64)])
def test_bf16_is_as_close_to_fp32_as_the_plain_bf16_path(n, d, chunk):
    h, w, y = inputs(n, d, seed=1)
    exact = loss_and_grads(plain, h, w, y)
    theirs = loss_and_grads(plain, h, w, y, bf16=True)
    ours = loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk=chunk), h, w, y, bf16=True)
    assert abs(ours[0] - theirs[0]) < 2e-3  # stated tolerance: loss within 2e-3 of the plain bf16 loss
    for i in (1, 2):  # gradients within 2% (of the largest entry) of the plain bf16 ones ...
        assert rel(ours[i], theirs[i]) < 2e-2
        assert rel(ours[i], exact[i]) < 1.5 * rel(theirs[i], exact[i]) + 1e-3  # ... and no further from fp32


def test_the_incoming_gradient_scales_both_gradients_and_no_grad_gives_the_loss():
    h, w, y = inputs(40, 16)
    loss = linear_cross_entropy(h, w, y, chunk=16)
    gh, gw = torch.autograd.grad(loss / 4, (h, w))  # what gradient accumulation does
    ref = loss_and_grads(plain, h, w, y)
    assert rel(4 * gh, ref[1]) < 1e-5 and rel(4 * gw, ref[2]) < 1e-5
    with torch.no_grad(), Largest() as seen:  # evaluation: the loss, and no gradient made
        assert abs(linear_cross_entropy(h, w, y, chunk=16) - ref[0]) < 1e-5
    assert {shape for op, shape in seen.ops if op.startswith("aten.mm")} == {(16, V), (8, V)}  # the logits alone
    only_h = torch.autograd.grad(linear_cross_entropy(h, w.detach(), y, chunk=16), h)[0]
    assert rel(only_h, ref[1]) < 1e-5


def test_never_more_than_one_chunk_of_logits():
    n, d, chunk = 300, 32, 64
    h, w, y = inputs(n, d)
    sizes = {}
    for name, fn in (("plain", plain), ("fused", lambda *a: linear_cross_entropy(*a, chunk=chunk))):
        with Largest() as seen:
            loss_and_grads(fn, h, w, y, bf16=True)
        sizes[name] = seen.numel
    assert sizes["plain"] == n * V  # the full logits
    assert sizes["fused"] == chunk * V  # one chunk's (the head's weight and its gradient are smaller)


@pytest.mark.parametrize("bf16", [False, True])
def test_padded_rows_are_multiplied_but_never_count(bf16):
    """w's rows past vocab (pad_vocab_to) take part in the matmul and nothing else: the loss and
    gradients of the real rows are those of w without them, and the padded rows get zero gradient."""
    h, w, y = inputs(300, 64)
    padded = torch.cat([w.detach(), 20 * torch.randn(47, 64)]).requires_grad_()  # 50304 rows; large logits
    ref = loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk=128), h, w, y, bf16)
    got = loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk=128, vocab=V), h, padded, y, bf16)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert rel(got[2][:V], ref[2]) < (1e-3 if bf16 else 1e-6)  # bf16: the head gradient's matmul has another shape
    assert not got[2][V:].any()
    unmasked = loss_and_grads(lambda *a: linear_cross_entropy(*a, chunk=128), h, padded, y, bf16)
    assert unmasked[0] > ref[0] + 1  # without the mask the padded logits would take the probability


def small(**kw):
    return ModelConfig(**{"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": V, **kw})


def twins(cfg):
    torch.manual_seed(0)
    fused, ref = GPT(cfg), GPT(cfg)
    ref.load_state_dict(fused.state_dict())
    ref.fused_loss = False
    return fused, ref


def test_gpt_uses_it_for_the_loss_and_keeps_logits_without_targets():
    fused, ref = twins(small())
    x, y = torch.randint(0, V, (3, 16)), torch.randint(0, V, (3, 16))
    la, lb = fused(x, y), ref(x, y)
    la.backward()
    lb.backward()
    assert abs(la - lb) < 1e-5
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        assert rel(p.grad, q.grad) < 1e-4, name
    assert torch.equal(fused(x), ref(x))  # no targets: logits, the same module


@pytest.mark.parametrize("fused_loss", [True, False])
def test_a_padded_gpt_is_the_unpadded_one(fused_loss):
    """pad_vocab_to = 64 (50257 -> 50304 rows) on the fused and the plain path: with the same real
    rows, the same loss, logits and gradients as the unpadded model; padded rows get none."""
    torch.manual_seed(0)
    plain_model, padded = GPT(small()), GPT(small(pad_vocab_to=64))
    assert padded.wte.weight.shape == (50304, 32)
    state = plain_model.state_dict()
    state["wte.weight"] = state["lm_head.weight"] = torch.cat([state["wte.weight"], padded.wte.weight[V:].detach()])
    padded.load_state_dict(state)
    plain_model.fused_loss = padded.fused_loss = fused_loss
    x, y = torch.randint(0, V, (3, 16)), torch.randint(0, V, (3, 16))
    la, lb = plain_model(x, y), padded(x, y)
    la.backward()
    lb.backward()
    assert abs(la - lb) < 1e-6 and torch.equal(plain_model(x), padded(x))  # logits: the V real ids only
    assert rel(padded.wte.weight.grad[:V], plain_model.wte.weight.grad) < 1e-5 and not padded.wte.weight.grad[V:].any()


def test_one_compiled_step_matches_eager():
    fused, ref = twins(small(n_layer=1))
    x, y = torch.randint(0, V, (2, 16)), torch.randint(0, V, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        la, lb = torch.compile(fused)(x, y), ref(x, y)
    la.backward()
    lb.backward()
    assert abs(la - lb) < 2e-3
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        assert rel(p.grad, q.grad) < 3e-2, name


def test_the_cerebras_backend_traces_the_plain_path(monkeypatch, tmp_path):
    sdk = MagicMock()  # the SDK's entry points, recorded: only which model it was given matters here
    monkeypatch.setitem(sys.modules, "cerebras", MagicMock(pytorch=sdk))
    monkeypatch.setitem(sys.modules, "cerebras.pytorch", sdk)
    from gigagpt.cerebras_sdk import setup

    setup(load_config(REPO / "configs" / "tiny.toml", check_data=False), "CPU", str(tmp_path))
    model = sdk.compile.call_args.args[0]
    assert isinstance(model, GPT) and model.fused_loss is False


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_across_shapes_scales_padding_and_chunks(bf16):
    """The whole small space, not convenient points: 1 to 33 rows, a vocabulary of 1 to 1000, padded
    or not, chunks of 4 and the default, logits of a few units and of ~30 (a sharp softmax), a target
    at the last real id. fp32: the plain path's figures to fp32 rounding. bf16: each row's loss within
    2^-8 of the plain path on the same bf16 logits (the log-sum-exp reads the largest probability,
    rounded to bf16: a relative error <= 2^-9), gradients no further from fp64's than the plain bf16
    path's; padded rows get none."""
    gen = torch.Generator().manual_seed(1)
    for n, vocab, pad, chunk, scale in itertools.product((1, 7, 33), (1, 5, 64, 1000), (0, 64), (4, None), (1.0, 30.0)):
        rows, d = (-(-vocab // pad) * pad if pad else vocab), 16
        h = torch.randn(n, d, generator=gen).requires_grad_()
        w = (scale / d**0.5 * torch.randn(rows, d, generator=gen)).requires_grad_()
        y = torch.randint(0, vocab, (n,), generator=gen)
        y[-1] = vocab - 1
        case = (n, vocab, rows, chunk, scale)
        got = loss_and_grads(functools.partial(linear_cross_entropy, chunk=chunk, vocab=vocab), h, w, y, bf16=bf16)
        ref = loss_and_grads(functools.partial(plain, vocab=vocab), h, w, y, bf16=bf16)
        assert all(torch.isfinite(t).all() for t in got), case
        assert (got[2][vocab:] == 0).all(), case  # padded rows: no gradient
        if bf16:
            exact = loss_and_grads(functools.partial(plain, vocab=vocab), h.detach().double().requires_grad_(),
                                   w.detach().double().requires_grad_(), y)
            assert abs(got[0] - ref[0]) <= 2**-8 * (1 + ref[0].abs()), case
            for i in (1, 2):  # no further from the fp64 gradients than the plain bf16 path is
                assert rel(got[i], exact[i]) < 1.5 * rel(ref[i], exact[i]) + 1e-3, case
        else:
            assert abs(got[0] - ref[0]) <= 1e-5 * (1 + ref[0].abs()), case
            assert rel(got[1], ref[1]) < 1e-4 and rel(got[2], ref[2]) < 1e-4, case
