"""Chat templates ftwb ships, by family name (see NOTICE.md for where each comes from).

Plain Python, cheap to import: the config validates `model.chat_template` with it."""
from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).parent
ALIASES = {"llama-3": "llama3", "llama3.1": "llama3", "qwen2": "qwen", "qwen2.5": "qwen", "phi3": "phi",
           "phi-3": "phi", "gemma2": "gemma", "mistral-nemo": "mistral", "deepseek-r1": "deepseek_r1"}


def names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.jinja"))


def is_jinja(value: str) -> bool:
    return "{{" in value or "{%" in value


def resolve(value: str) -> str:
    """The Jinja text for `value`: a template itself, or the name of one ftwb ships.
    ValueError (naming the choices) for anything else."""
    if is_jinja(value):
        return value
    key = value.strip().lower()
    key = ALIASES.get(key, key)
    path = _DIR / f"{key}.jinja"
    if key and "/" not in key and path.is_file():
        return path.read_text(encoding="utf-8")
    raise ValueError(f"{value[:60]!r} is neither a Jinja template nor a template name ftwb ships "
                     f"({', '.join(names())}); leave it empty to use the tokenizer's own")
