import pytest
import tomllib
from conftest import REPO, gigagpt, write_dataset

from gigagpt.config import ConfigError, apply_overrides, from_dict, load_config, parse_override, to_toml

PRESETS = ["tiny", "nano", "124m", "111m", "1p3b", "13b", "70b", "175b"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.toml", check_data=False)
    assert cfg.model.n_embd % cfg.model.n_head == 0


def test_gigagpt_presets_have_reference_hyperparameters():
    # (layers, width, heads, init_std, batch, steps, lr, warmup, eps) from the reference table
    table = {
        "111m": (10, 768, 12, 0.02, 120, 9037, 6.0e-4, 1525, 1e-8),
        "1p3b": (24, 2048, 16, 0.01, 528, 24334, 2.0e-4, 346, 1e-8),
        "13b": (40, 5120, 40, 0.014, 1080, 116223, 1.2e-4, 581, 1e-9),
        "70b": (80, 8192, 64, 0.01, 1472, 663425, 1.0e-4, 3317, 1e-9),
        "175b": (96, 12288, 96, 0.005, 1472, 663425, 5.0e-6, 3317, 1e-10),
    }
    for name, row in table.items():
        c = load_config(REPO / "configs" / f"{name}.toml", check_data=False)
        m, t = c.model, c.train
        assert (m.n_layer, m.n_embd, m.n_head, m.init_std, t.batch_size, t.max_steps, t.lr,
                t.warmup_steps, t.eps) == row, name
        assert (m.block_size, m.vocab_size, t.grad_clip, t.weight_decay, t.min_lr_ratio) == (2048, 50257, 1.0, 0.1, 0.1)
        assert (t.beta1, t.beta2, t.grad_accum) == (0.9, 0.95, 1)


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, needles", [
    ("[model]\nn_layr = 2\n", ["n_layr", "allowed", "n_layer"]),
    ("[modle]\n", ["[modle]", "allowed"]),
    ("[train]\nlr = 'fast'\n", ["train.lr", "'fast'", "a finite number"]),
    ("[train]\nmax_steps = 1.5\n", ["train.max_steps", "1.5", "an integer"]),
    ("[train]\ncompile = 1\n", ["train.compile", "true or false"]),
    ("[model]\nn_embd = 100\nn_head = 3\n", ["model.n_embd", "100", "divisible", "n_head = 3"]),
    ("[model]\nn_layer = 0\n", ["model.n_layer", "0", "in [1, 1024]"]),
    ("[model]\npad_vocab_to = -64\n", ["model.pad_vocab_to", "-64", "in [0, 65536]"]),
    ("[model]\npad_vocab_to = 64.0\n", ["model.pad_vocab_to", "64.0", "an integer"]),
    ("[model]\nvocab_size = 1048576\npad_vocab_to = 65535\n", ["model.pad_vocab_to", "65535", "1114095", "at most 1048576"]),
    ("[train]\nbatch_size = -4\n", ["train.batch_size", "-4", "in [1, 1,000,000,000,000]"]),
    ("[train]\nlr = 0\n", ["train.lr", "0", "in (0, 1]"]),
    ("[train]\nmax_steps = 10\nwarmup_steps = 20\n", ["train.warmup_steps", "20", "max_steps = 10"]),
    ("[train]\ndtype = 'fp8'\n", ["train.dtype", "'fp8'", "bfloat16"]),
    ("[data]\ndataset = 'nowhere'\n", ["data.dataset", "'nowhere'", "gigagpt data prepare"]),
    ("[model\n", ["not valid TOML"]),
])
def test_bad_config_names_file_key_value(tmp_path, dataset, text, needles):
    if "[data]" not in text:
        text += f"\n[data]\ndataset = '{dataset}'\n" if "[model\n" not in text else ""
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_block_size_larger_than_data(tmp_path):
    ds = write_dataset(tmp_path / "small", n_train=5000, n_val=100)
    p = write(tmp_path, f"[model]\nblock_size = 128\n[data]\ndataset = '{ds}'\n")
    with pytest.raises(ConfigError, match=r"model.block_size = 128: must be smaller than the val split.*100 tokens"):
        load_config(p)


def test_overrides_are_typed():
    assert parse_override("train.lr=3e-4") == ("train", "lr", 3e-4)
    assert parse_override("train.max_steps=1_000") == ("train", "max_steps", 1000)
    assert parse_override("train.compile=true") == ("train", "compile", True)
    assert parse_override("data.dataset=a=b") == ("data", "dataset", "a=b")
    for bad, needle in [("train.max_steps=ten", "an integer"), ("train.compile=maybe", "true or false"),
                        ("train.nope=1", "unknown key train.nope"), ("lr=1", "section.key=value"),
                        ("foo.lr=1", "unknown section")]:
        with pytest.raises(ConfigError, match=needle):
            parse_override(bad)


def test_overrides_do_not_mutate_the_original():
    c = from_dict({})
    d = apply_overrides(c, ["train.lr=1e-3"])
    assert (c.train.lr, d.train.lr) == (6e-4, 1e-3)


def test_resolved_toml_round_trips():
    c = apply_overrides(from_dict({}), ["train.lr=3e-4", "data.dataset=a \"quoted\" path", "model.bias=false"])
    assert from_dict(tomllib.loads(to_toml(c))) == c


def test_cli_bad_config_exits_2_with_one_line(tmp_path, dataset):
    p = write(tmp_path, f"[train]\nlr = -1\n[data]\ndataset = '{dataset}'\n")
    proc = gigagpt("train", p, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"{p}: train.lr = -1.0: must be in (0, 1]" in proc.stderr
    proc = gigagpt("train", "tiny", "--set", "train.max_steps=many", check=False)
    assert proc.returncode == 2 and "train.max_steps = 'many': must be an integer" in proc.stderr
    proc = gigagpt("train", "no-such-preset", check=False)
    assert proc.returncode == 2 and "presets:" in proc.stderr and "tiny" in proc.stderr
