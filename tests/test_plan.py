import json

import pytest
from conftest import REPO, gigagpt

from gigagpt.config import apply_overrides, load_config
from gigagpt.plan import (
    DEVICE_PEAKS,
    activation_bytes,
    best_plan,
    fits,
    flops_per_token,
    memory_estimate,
    param_count,
    plan,
    smallest_world,
    step_seconds,
    tokens_per_step,
    valid_world,
)


def preset(name, *overrides):
    return apply_overrides(load_config(REPO / "configs" / f"{name}.toml", check_data=False), list(overrides))


def test_sharding_divides_the_parameter_state_and_only_it():
    cfg = preset("13b")
    one, ddp, fsdp = (memory_estimate(cfg, w, s) for w, s in ((1, "none"), (8, "ddp"), (8, "fsdp")))
    n16 = 16 * 12_852_234_240 // 1  # ~16 bytes per parameter
    assert abs(one["weights"] + one["grads"] + one["optimizer"] - n16) / n16 < 0.01
    assert fsdp["weights"] == one["weights"] // 8 and fsdp["optimizer"] == one["optimizer"] // 8
    assert ddp["weights"] == one["weights"] and ddp["buffers"] > one["buffers"]  # gradient buckets
    assert ddp["activations"] == fsdp["activations"] < one["activations"]  # batch split across 8
    ckpt = memory_estimate(cfg, 8, "fsdp", checkpointing=True)
    assert ckpt["activations"] < fsdp["activations"] / 3


def test_the_fused_loss_holds_one_chunk_of_logits_at_any_batch():
    few, many = preset("nano", "train.batch_size=2"), preset("nano", "train.batch_size=64")  # 512 tokens: one chunk

    def per_token(fused):
        return (activation_bytes(many, fused_loss=fused) - activation_bytes(few, fused_loss=fused)) / (62 * 256)

    assert per_token(False) - per_token(True) == pytest.approx(1.5 * 50257)  # the plain path's logits, compiled bf16
    fused, plain = memory_estimate(many), memory_estimate(many, fused_loss=False)
    assert plain["activations"] - fused["activations"] > 1.4 * 64 * 256 * 50257 - 8 * 50257 * 256


def test_padded_vocabulary_is_counted_as_the_model_builds_it():
    """pad_vocab_to = 64: the planner's parameters are the real model's (50304 rows), its FLOPs and
    head memory follow the padded rows, and the default (no padding) is unchanged."""
    from gigagpt.model import build_on_meta, count_parameters

    off, on = preset("nano"), preset("nano", "model.pad_vocab_to=64")
    assert param_count(on.model) == count_parameters(build_on_meta(on.model)) == param_count(off.model) + 47 * 256
    assert count_parameters(build_on_meta(off.model)) == param_count(off.model)
    assert flops_per_token(on.model) - flops_per_token(off.model) == 6 * 47 * 256
    for fused in (True, False):
        assert activation_bytes(on, fused_loss=fused) > activation_bytes(off, fused_loss=fused)
    assert memory_estimate(on)["weights"] - memory_estimate(off)["weights"] == 4 * 47 * 256
    data = json.loads(gigagpt("plan", "nano", "--set", "model.pad_vocab_to=64", "--json").stdout)
    assert data["params"] == param_count(on.model) and (data["vocab_size"], data["vocab_rows"]) == (50257, 50304)
    assert "(vocabulary padded to 50,304 rows)" in gigagpt("plan", "nano", "--set", "model.pad_vocab_to=64").stdout
    assert "padded" not in gigagpt("plan", "nano").stdout


def test_smallest_world_is_the_boundary_and_splits_the_batch():
    cfg = preset("175b")
    h100 = DEVICE_PEAKS["H100"][1] * 2**30
    n = smallest_world(cfg, h100, "fsdp", checkpointing=True)
    assert n is not None and fits(cfg, n, "fsdp", h100, True) and valid_world(cfg, n)
    assert not fits(cfg, n - 1, "fsdp", h100, True) or not any(valid_world(cfg, k) for k in range(n // 2, n))
    assert smallest_world(cfg, h100, "ddp") is None  # a 175B replica never fits 80 GB
    assert best_plan(cfg, h100) == (n, "fsdp", True)
    tiny = preset("tiny")
    assert best_plan(tiny, 8 * 2**30) == (1, "none", False)


def test_step_time_is_flops_over_throughput():
    cfg = preset("111m")
    s = step_seconds(cfg, 16, 989e12, 0.4)
    assert s == pytest.approx(flops_per_token(cfg.model) * tokens_per_step(cfg) / (16 * 989e12 * 0.4))


def test_plan_answers_the_175b_question(tmp_path):
    out = gigagpt("plan", "configs/175b.toml", "--device", "H100").stdout
    assert "174.6B parameters" in out and "Fewest devices of H100 that fit" in out
    assert "fsdp + act. ckpt      368" in out or "fsdp + act. ckpt" in out
    assert "16 bytes per parameter" in out  # the why
    data = json.loads(gigagpt("plan", "175b", "--device", "h100", "--devices", "512", "--json").stdout)
    assert data["params"] == 174_604_259_328 and data["devices"] == 512
    assert data["memory"]["fsdp + act. ckpt"]["fits"] is True and data["memory"]["ddp"]["fits"] is False
    assert data["named_devices"]["H100"]["min_devices"] == data["smallest"]["fsdp + act. ckpt"]
    assert data == plan(preset("175b"), 512, 80 * 2**30)
    days = data["named_devices"]["H100"]["at_devices"]["train_seconds"] / 86400
    assert 50 < days < 500  # 2T tokens at 40% of 512 H100s: months, not minutes


def test_plan_refuses_bad_arguments():
    proc = gigagpt("plan", "tiny", "--device", "TPUv9", check=False)
    assert proc.returncode == 2 and "unknown; known: A100-40GB" in proc.stderr
    proc = gigagpt("plan", "tiny", "--devices", "0", check=False)
    assert proc.returncode == 2 and "--devices 0" in proc.stderr
    proc = gigagpt("plan", "tiny", "--set", "model.n_head=3", check=False)
    assert proc.returncode == 2 and "divisible" in proc.stderr
    assert "fits" in gigagpt("plan", "nano", "--device-memory", "2").stdout
