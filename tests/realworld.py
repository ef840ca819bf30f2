"""Real chat templates and real tokenizers for tests, fetched from the package registry.

The `llama-cpp-python` sdist on PyPI vendors llama.cpp, which keeps copies of the Hugging
Face chat templates of current model families (`models/templates/*.jinja`) and vocab-only
GGUF files of real tokenizers (`models/ggml-vocab-*.gguf`). `pip download` fetches the
sdist once per machine into `${FTWB_TEST_ASSETS:-~/.cache/ftwb/test-assets}`; only those
files are kept (plus llama.cpp's MIT licence, which covers the copies).

    templates()                  {name: jinja text}, name = file stem
    gguf_tokenizer("qwen2")      a transformers tokenizer built from ggml-vocab-qwen2.gguf
    tokenizer_for_template(name) the vocab that fits a template, its markers as special tokens
    realworld                    pytest fixture: this module, or a skip when the registry is
                                 out of reach (a failure under CI, where it must be reachable)

A GGUF tokenizer takes up to a minute to build, so each one is saved once as a plain
tokenizer directory beside the assets and loaded from there (about a second) afterwards.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
_MODELS = "vendor/llama.cpp/models/"


class AssetsUnavailable(RuntimeError):
    """The sdist could not be fetched or read (no registry, no disk)."""


def assets_root() -> Path:
    base = os.environ.get("FTWB_TEST_ASSETS")
    return Path(base) if base else Path.home() / ".cache" / "ftwb" / "test-assets"


def _dest() -> Path:
    return assets_root() / f"llama-cpp-python-{VERSION}"


@contextlib.contextmanager
def _locked(root: Path):
    """One fetch per machine even when several test processes start at once."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _extract(sdist: Path, dest: Path) -> None:
    """Unpack the templates, vocab GGUFs and licence of `sdist` into `dest`, atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        (tmp / "templates").mkdir()
        with tarfile.open(sdist) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                rel = member.name.split("/", 1)[-1]  # drop "llama_cpp_python-<v>/"
                if not rel.startswith(_MODELS) and rel != "vendor/llama.cpp/LICENSE":
                    continue
                name = rel.rsplit("/", 1)[-1]
                if rel == "vendor/llama.cpp/LICENSE":
                    target = tmp / "LICENSE.llama.cpp"
                elif rel.startswith(_MODELS + "templates/") and name.endswith(".jinja"):
                    target = tmp / "templates" / name
                elif rel.count("/") == _MODELS.count("/") and name.startswith("ggml-vocab-") \
                        and name.endswith(".gguf"):
                    target = tmp / name
                else:
                    continue
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        if not any((tmp / "templates").iterdir()):
            raise AssetsUnavailable(f"{sdist.name} holds no chat templates under {_MODELS}templates/")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _download(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--quiet", f"{PACKAGE}=={VERSION}", "-d", str(into)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AssetsUnavailable(f"pip download {PACKAGE}=={VERSION}: {e}") from None
    found = sorted(into.glob("*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise AssetsUnavailable(f"pip download {PACKAGE}=={VERSION} failed: {' | '.join(tail)}")
    return found[0]


def ensure_assets(sdist: str | Path | None = None) -> Path:
    """The extracted assets directory, fetching the sdist with pip the first time.
    `sdist`: an already downloaded copy to unpack instead (seeds a cache offline)."""
    dest = _dest()
    if (dest / "templates").is_dir():
        return dest
    try:
        with _locked(assets_root()):
            if (dest / "templates").is_dir():
                return dest
            if sdist is not None:
                _extract(Path(sdist), dest)
            else:
                with tempfile.TemporaryDirectory(prefix=".download-", dir=assets_root()) as tmp:
                    _extract(_download(Path(tmp)), dest)
    except OSError as e:
        raise AssetsUnavailable(f"cannot write the test assets under {assets_root()}: {e}") from None
    return dest


@lru_cache(maxsize=1)
def templates() -> dict[str, str]:
    """{template name (file stem): jinja text}, sorted by name."""
    d = ensure_assets() / "templates"
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(d.glob("*.jinja"))}


def vocab_names() -> list[str]:
    """The vocab GGUFs shipped, e.g. ['aquila', ..., 'llama-bpe', 'qwen2', ...]."""
    return sorted(p.name[len("ggml-vocab-"):-len(".gguf")] for p in ensure_assets().glob("ggml-vocab-*.gguf"))


def _build_from_gguf(name: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    d = ensure_assets()
    gguf = f"ggml-vocab-{name}.gguf"
    if not (d / gguf).is_file():
        raise KeyError(f"no {gguf} in {PACKAGE} {VERSION}; have: {', '.join(vocab_names())}")
    try:
        return AutoTokenizer.from_pretrained(str(d), gguf_file=gguf)
    except Exception as e:  # noqa: BLE001 (any refusal of the config step)
        # transformers builds a model config first and refuses architectures it cannot load
        # as models (command-r) or configs it cannot parse (gemma-4); the tokenizer converter
        # itself knows these vocabularies, so build from it directly.
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (convert_gguf_tokenizer,
                                                                           get_gguf_tokenizer)

        arch, tok_dict, tok_config = get_gguf_tokenizer(str(d / gguf))
        backend, extra = convert_gguf_tokenizer(arch, tok_dict)
        try:
            return PreTrainedTokenizerFast(tokenizer_object=backend, **tok_config, **extra)
        except Exception:
            raise e from None


@lru_cache(maxsize=None)
def _saved_tokenizer_dir(name: str) -> Path:
    """Build the tokenizer of ggml-vocab-NAME.gguf once per machine and save it as a plain
    tokenizer directory (tokenizer.json + tokenizer_config.json)."""
    root = ensure_assets() / "tokenizers"
    out = root / name
    if (out / "tokenizer_config.json").is_file():
        return out
    root.mkdir(exist_ok=True)
    with _locked(root):
        if (out / "tokenizer_config.json").is_file():
            return out
        tok = _build_from_gguf(name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            tok.save_pretrained(str(tmp))
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return out


def gguf_tokenizer(name: str):
    """A fresh transformers tokenizer for ggml-vocab-NAME.gguf (built with
    AutoTokenizer.from_pretrained(dir, gguf_file=...) once per machine). Each call returns
    a new object, so callers may set chat_template or add tokens freely."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_saved_tokenizer_dir(name)))


# ---------------------------------------------------------------- templates -> tokenizers

# Which shipped vocabulary a template's model family uses (first match wins). Families
# whose vocabulary is not shipped get a byte-level fallback that can spell any text.
_FAMILY_VOCAB = [
    (r"llama-?3|Llama-3|Hermes-.*Llama-3|firefunction|functionary", "llama-bpe"),
    (r"DeepSeek-R1-Distill-Llama", "llama-bpe"),
    (r"Qwen3\.5", "qwen35"),
    (r"Qwen|QwQ|DeepSeek-R1-Distill-Qwen|MiMo", "qwen2"),
    (r"Phi-3|phi-3", "phi-3"),
    (r"gemma-4", "gemma-4"),
    (r"DeepSeek|deepseek", "deepseek-llm"),
    (r"Cohere|command-r", "command-r"),
    (r"[Mm]istral|Ministral|Devstral|Bielik", "llama-spm"),
]
FALLBACK_VOCAB = "qwen2"

# Strings templates emit as control tokens: <|...|>, <｜...｜>, [INST]-style, <...> words.
_MARKER = re.compile(r"<\|[A-Za-z0-9_./:=-]{1,48}\|>|<｜[^<>｜]{1,48}｜>|\[/?[A-Z][A-Z_]{2,30}\]"
                     r"|</?(?:s|bos|eos|start_of_turn|end_of_turn)>|<seed:\w+>|\[e~\[|\]~!?b\[")


def vocab_for_template(name: str) -> str:
    for pattern, vocab in _FAMILY_VOCAB:
        if re.search(pattern, name):
            return vocab
    return FALLBACK_VOCAB


def template_markers(text: str) -> list[str]:
    """The control-token strings a template writes, in order of first appearance."""
    seen: dict[str, None] = {}
    for m in _MARKER.finditer(text):
        seen.setdefault(m.group(0), None)
    return list(seen)


@lru_cache(maxsize=None)
def _family_tokenizer(vocab: str):
    """One tokenizer per vocabulary per process, holding as special tokens every marker
    that any template mapped to it writes and the vocabulary lacks (loading a large
    vocabulary costs seconds; copying one costs as much)."""
    tok = gguf_tokenizer(vocab)
    have = tok.get_vocab()
    missing: dict[str, None] = {}
    for name, text in templates().items():
        if vocab_for_template(name) == vocab:
            missing.update((m, None) for m in template_markers(text) if m not in have)
    if missing:
        tok.add_special_tokens({"additional_special_tokens": list(missing)}, replace_extra_special_tokens=False)
    return tok


def tokenizer_for_template(name: str):
    """A tokenizer fit for template NAME: the family's real vocabulary (or the fallback),
    with the markers the template writes as special tokens, as the family's own tokenizer
    has them, and the template set as its chat template. The object is shared by every
    template of that vocabulary in this process: each call sets chat_template again."""
    tok = _family_tokenizer(vocab_for_template(name))
    tok.chat_template = templates()[name]
    return tok


# ---------------------------------------------------------------- pytest

@pytest.fixture(scope="session")
def realworld():
    """This module, with its assets in place; skips when the registry cannot be reached
    (fails under CI, where a skip would hide the whole corpus)."""
    try:
        ensure_assets()
    except AssetsUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"real-world test assets unavailable: {e}")
        pytest.skip(f"real-world test assets unavailable: {e}")
    return sys.modules[__name__]


if __name__ == "__main__":  # python tests/realworld.py [SDIST]: fetch (or unpack SDIST) and list
    where = ensure_assets(sys.argv[1] if len(sys.argv) > 1 else None)
    print(where)
    print(len(templates()), "templates;", "vocabs:", " ".join(vocab_names()))
