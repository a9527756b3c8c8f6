import math

import pytest
import torch
from conftest import REPO

from gigagpt.config import ModelConfig, TrainConfig, load_config
from gigagpt.model import GPT, build_model, build_on_meta, count_parameters
from gigagpt.plan import flops_per_token, param_count
from gigagpt.train import lr_at, make_optimizer

# Parameter counts from the reference notes (tied embeddings, 4x MLP), in billions, with the
# precision the notes give them.
REFERENCE_BILLIONS = {"111m": (0.111, 3), "1p3b": (1.32, 2), "13b": (12.85, 2), "70b": (64.9, 1), "175b": (174.6, 1)}


@pytest.mark.parametrize("name", ["tiny", "nano", "124m", "111m", "1p3b", "13b", "70b", "175b"])
def test_meta_build_matches_arithmetic(name):
    cfg = load_config(REPO / "configs" / f"{name}.toml", check_data=False)
    model = build_on_meta(cfg.model)
    assert next(model.parameters()).device.type == "meta"
    assert count_parameters(model) == param_count(cfg.model)
    if name in REFERENCE_BILLIONS:
        value, digits = REFERENCE_BILLIONS[name]
        assert round(param_count(cfg.model) / 1e9, digits) == value
    if name == "124m":  # GPT-2 small with its 1024 positions: the well-known 124,439,808
        assert param_count(cfg.model) == 124_439_808


def test_flops_per_token_is_nanogpt_convention():
    m = ModelConfig(n_layer=10, n_head=12, n_embd=768, block_size=2048)
    assert flops_per_token(m) == 6 * param_count(m) + 12 * 10 * 768 * 2048


def small(**kw):
    return ModelConfig(**{"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, "vocab_size": 97, **kw})


def test_structure_tied_head_no_head_bias_and_bias_switch():
    m = GPT(small())
    assert m.lm_head.weight is m.wte.weight and m.lm_head.bias is None
    assert m.blocks[0].attn.qkv.bias is not None and m.blocks[0].ln_1.bias is not None
    nb = GPT(small(bias=False))
    assert nb.blocks[0].attn.qkv.bias is None and nb.ln_f.bias is None
    assert count_parameters(nb) == param_count(small(bias=False))


def test_pad_vocab_to_rounds_the_table_up_and_is_never_sampled():
    """nanoGPT's 50257 -> 50304; off (0 or 1) by default, so the presets keep their counts. The
    padded ids have no logit: generation never yields one (at random init, 31 of 128 ids are padding)."""
    big = load_config(REPO / "configs" / "124m.toml", ["model.pad_vocab_to=64"], check_data=False).model
    assert param_count(big) == 124_439_808 + 47 * 768 and count_parameters(build_on_meta(big)) == param_count(big)
    assert param_count(small(pad_vocab_to=1)) == param_count(small(pad_vocab_to=0)) == param_count(small())
    cfg = small(pad_vocab_to=64)
    torch.manual_seed(0)
    m = GPT(cfg).eval()
    assert m.wte.weight.shape == (128, 32) and m.lm_head.weight is m.wte.weight
    assert count_parameters(m) == param_count(cfg) == param_count(small()) + 31 * 32
    start = torch.tensor([[1, 2, 3]])
    assert m(start).shape == (1, 3, 97)
    out = m.generate(start, 200, temperature=2.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 203) and out.max() < 97


def test_init_scales_residual_projections():
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=8, n_head=4, n_embd=256, block_size=64, vocab_size=1000, init_std=0.02)
    m = GPT(cfg)
    assert abs(m.wte.weight.std().item() - 0.02) < 0.001
    assert abs(m.blocks[0].mlp.fc.weight.std().item() - 0.02) < 0.001
    target = 0.02 / math.sqrt(2 * 8)
    for b in m.blocks:
        assert abs(b.attn.proj.weight.std().item() - target) < 0.0005
        assert abs(b.mlp.proj.weight.std().item() - target) < 0.0005
        assert b.attn.qkv.bias.abs().sum() == 0 and (b.ln_1.weight == 1).all()


def test_sdpa_and_masked_softmax_paths_agree_and_are_causal():
    torch.manual_seed(0)
    a = GPT(small())
    b = GPT(small(attention="math"))
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 97, (3, 16))
    la, lb = a(x), b(x)
    assert torch.allclose(la, lb, atol=1e-5)
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 97  # changing the future must not change the past
    assert torch.allclose(b(x2)[:, :10], lb[:, :10], atol=1e-6)


def test_loss_is_mean_token_cross_entropy():
    torch.manual_seed(0)
    m = GPT(small())
    x, y = torch.randint(0, 97, (2, 16)), torch.randint(0, 97, (2, 16))
    manual = torch.nn.functional.cross_entropy(m(x).view(-1, 97), y.view(-1))
    assert torch.allclose(m(x, y), manual)


def test_generate_top_k_max_tokens_and_end_of_text():
    torch.manual_seed(0)
    m = GPT(small()).eval()
    start = torch.tensor([[1, 2, 3]])
    out = m.generate(start, 20, temperature=1.0, top_k=5)
    assert out.shape == (1, 23) and (out[:, :3] == start).all()
    greedy = m.generate(start, 1, temperature=0)[0, -1].item()
    assert greedy == m(start)[0, -1].argmax().item()
    # top_k=1 is greedy; an eot equal to the greedy token stops before emitting anything
    assert m.generate(start, 5, top_k=1, eot=greedy).shape == (1, 3)
    # beyond block_size the context is cropped, generation goes on
    assert m.generate(start, 30, top_k=3).shape == (1, 33)
    # on_token streams exactly the new tokens, in order (what `gigagpt sample` prints as it goes)
    streamed = []
    out = m.generate(start, 12, top_k=5, generator=torch.Generator().manual_seed(1), on_token=streamed.append)
    assert streamed == out[0, 3:].tolist() and len(streamed) == 12


def test_lr_schedule_warmup_then_cosine_to_min():
    t = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, t) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[99] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(0, TrainConfig(max_steps=5, warmup_steps=0, lr=2.0)) == 2.0


def test_weight_decay_only_on_matrices():
    m = GPT(small())
    opt = make_optimizer(m, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert any(p is m.wte.weight for p in decay["params"])  # embeddings decay, as in the reference
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
    assert opt.defaults["betas"] == (0.9, 0.95)


def test_build_model_is_tied_and_seeded():
    cfg = small()
    torch.manual_seed(3)
    a = build_model(cfg, "cpu")
    torch.manual_seed(3)
    b = build_model(cfg, "cpu")
    assert a.lm_head.weight is a.wte.weight and count_parameters(a) == param_count(cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert abs(a.blocks[0].attn.proj.weight.std().item() - 0.02 / 2) < 0.005
