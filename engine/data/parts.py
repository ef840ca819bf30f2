"""Message content: plain text, or a list of typed parts; text is all ftwb trains on.

A part is a string or a dict {"type": "text", "text" | "value": ...} (OpenAI, LLaMA-Factory
v1). Image, audio and video parts, and rows carrying image/audio/video columns, are
multimodal: ftwb trains text models, so such rows are refused naming the modality rather
than trained as the text that is left. Lone surrogates (JSON "\\ud800") cannot be encoded
and would crash a tokenizer, so text holding one is refused where it is found.
"""
from __future__ import annotations

import re

from engine.data.errors import RowError

# Row columns that carry media (LLaMA-Factory `images`/`videos`/`audios`, HF `image`, ...).
MEDIA_COLUMNS = {"images": "image", "image": "image", "image_url": "image", "videos": "video", "video": "video",
                 "audios": "audio", "audio": "audio"}
# Part types -> modality; OpenAI, Anthropic, Qwen-VL and LLaMA-Factory spellings.
_PART_MODALITY = {"image": "image", "image_url": "image", "input_image": "image", "video": "video",
                  "video_url": "video", "audio": "audio", "input_audio": "audio", "audio_url": "audio",
                  "file": "file", "document": "file"}
_TEXT_TYPES = ("text", "input_text", "output_text")
_SURROGATE = re.compile("[\ud800-\udfff]")


class MultimodalError(RowError):
    """The row carries images, audio or video."""

    check = "multimodal"


class InvalidTextError(RowError):
    """The text cannot be encoded (a lone surrogate)."""

    check = "invalid_unicode"


def check_text(s: str, where: str) -> str:
    m = _SURROGATE.search(s)
    if m:
        raise InvalidTextError(f"{where} holds a lone surrogate U+{ord(m.group()):04X} at char {m.start()} "
                               "(invalid Unicode, often a broken \\u escape); fix or drop this row")
    return s


def media_in_row(row: dict) -> str | None:
    """The first modality a row's columns carry ("image", "audio", "video"), or None."""
    for key, modality in MEDIA_COLUMNS.items():
        v = row.get(key)
        if v not in (None, "", [], {}):
            return f"{modality} ('{key}' column)"
    return None


def refuse_media(row: dict) -> None:
    what = media_in_row(row)
    if what:
        raise MultimodalError(f"row carries {what}; ftwb trains text models only: drop this column "
                              "(or the rows) to train on the text")


def parts_text(value: list, where: str) -> str:
    """The text of a list of parts; media parts raise MultimodalError naming the modality."""
    texts = []
    for n, p in enumerate(value):
        if isinstance(p, str):
            texts.append(p)
            continue
        if not isinstance(p, dict):
            raise RowError(f"{where} content part {n} is {type(p).__name__}, not text or an object")
        kind = p.get("type", "text")
        if kind in _TEXT_TYPES or (kind is None and ("text" in p or "value" in p)):
            t = p.get("text", p.get("value"))
            if not isinstance(t, str):
                raise RowError(f"{where} content part {n} has no text (expected 'text' or 'value')")
            texts.append(t)
        elif kind in _PART_MODALITY or any(k in p for k in ("image", "image_url", "audio", "video")):
            modality = _PART_MODALITY.get(kind) or next(k for k in ("image", "audio", "video") if k in p
                                                        or f"{k}_url" in p)
            raise MultimodalError(f"{where} has an {modality} part; ftwb trains text models only: "
                                  "drop the non-text parts (or the rows) to train on the text")
        else:
            raise RowError(f"{where} content part {n} has type {kind!r}; only text parts are supported")
    if not texts:
        raise RowError(f"{where} content is a list without text parts; only text is supported")
    return "".join(texts)


def _part_media(content) -> str | None:
    if isinstance(content, list):
        for p in content:
            if isinstance(p, dict):
                kind = p.get("type")
                if kind in _PART_MODALITY:
                    return f"{_PART_MODALITY[kind]} (a content part of type '{kind}')"
    return None


def row_media(row) -> str | None:
    """The modality a row carries, in a media column or a typed content part, or None."""
    if not isinstance(row, dict):
        return None
    what = media_in_row(row)
    if what:
        return what
    for key in ("messages", "conversations"):
        turns = row.get(key)
        if isinstance(turns, list):
            for t in turns:
                if isinstance(t, dict):
                    what = _part_media(t.get("content", t.get("value")))
                    if what:
                        return what
    return None
