"""Chat formatting and the loss mask: which tokens of an example are trained.

The mask works with any chat template, not only ones with generation markers: each
assistant turn i is located by rendering the conversation up to turn i with the
generation prompt, and up to and including turn i; the text between the two renders is
the answer plus whatever the template closes the turn with (<|im_end|>, <|eot_id|>,
</s> ...), so the end-of-turn token is trained and the next turn's header is not. The
full conversation is tokenised once and tokens are assigned to spans by their character
offsets. When a template breaks the prefix property (an earlier render is not a prefix
of a later one, e.g. templates that drop old reasoning), or the tokenizer has no offsets,
the example is tokenised segment by segment instead.
"""
from __future__ import annotations

from engine.data.errors import DataError, RowError

IGNORE = -100

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer, override: str | None = None) -> str:
    """Set and return the template in effect: the override ('chatml' or Jinja), the
    tokenizer's own, or ChatML. No tokens are added (that would resize the embeddings):
    where <|im_start|>/<|im_end|> are not tokens, the markers are trained as plain text."""
    if override:
        if override.strip().lower() == "chatml":
            template = CHATML_TEMPLATE
        elif "{{" in override or "{%" in override:
            template = override
        else:
            raise DataError(f"model.chat_template: {override[:60]!r} is neither 'chatml' nor a Jinja template; "
                            "leave it empty to use the tokenizer's own")
    else:
        template = getattr(tokenizer, "chat_template", None)
        if isinstance(template, dict):  # some tokenizers ship several named templates
            template = template.get("default") or next(iter(template.values()), None)
        template = template or CHATML_TEMPLATE
    tokenizer.chat_template = template
    return template


def _render(tokenizer, messages: list[dict], tools, generation: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                             add_generation_prompt=generation)
    except Exception as e:  # the template's own raise_exception(), or a Jinja error
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise RowError(f"the chat template cannot render this conversation ({msg})") from None


def _lcp(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_example(tokenizer, example: dict, train_on: str = "assistant"):
    """Render an example. Returns ("spans", text, [(start, end), ...]) where the character
    spans are trained, or ("segments", [(text, trained), ...]) for the fallback path."""
    if "text" in example and "messages" not in example:
        return ("plain", example["text"])
    messages, tools = example["messages"], example.get("tools")
    full = _render(tokenizer, messages, tools, False)
    if train_on == "all":
        return ("spans", full, [(0, len(full))])
    spans, segments, ok, prev = [], [], True, ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        try:
            before = _render(tokenizer, messages[:i], tools, True) if i else ""
        except RowError:
            before = ""  # templates that refuse an empty or partial conversation
        upto = _render(tokenizer, messages[: i + 1], tools, False)
        if ok and upto.startswith(before) and full.startswith(upto) and len(before) >= len(prev):
            spans.append((len(before), len(upto)))
        else:
            ok = False
        segments.append((before[_lcp(prev, before):], False))
        segments.append((upto[_lcp(before, upto):], True))
        prev = upto
    if ok:
        return ("spans", full, spans)
    return ("segments", [s for s in segments if s[0]])


def _labels_from_offsets(ids: list[int], offsets, spans) -> list[int]:
    labels = [IGNORE] * len(ids)
    k = 0
    for j, (start, _end) in enumerate(offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if start >= spans[k][0]:
            labels[j] = ids[j]
    return labels


def _encode_piece(tokenizer, text: str, first: bool) -> list[int]:
    """Encode a piece of a longer text. A piece after the first is encoded after a newline
    that is then removed, so SentencePiece tokenizers add no word-start space of their own."""
    if first:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    nl = tokenizer("\n", add_special_tokens=False)["input_ids"]
    ids = tokenizer("\n" + text, add_special_tokens=False)["input_ids"]
    return ids[len(nl):] if ids[: len(nl)] == nl else tokenizer(text, add_special_tokens=False)["input_ids"]


def _plain_ids(tokenizer, ids: list[int]) -> list[int]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = list(ids)
    if bos is not None and (not out or out[0] != bos):
        out.insert(0, bos)
    if eos is not None:
        out.append(eos)
    return out


def tokenize_planned(tokenizer, plans: list) -> list[tuple[list[int], list[int]]]:
    """Tokenise planned examples; everything with offsets goes through the tokenizer in one batch."""
    out: list = [None] * len(plans)
    batch_idx, batch_text = [], []
    fast = getattr(tokenizer, "is_fast", False)
    for i, plan in enumerate(plans):
        if plan[0] == "plain" or (plan[0] == "spans" and fast):
            batch_idx.append(i)
            batch_text.append(plan[1])
        elif plan[0] == "spans":  # slow tokenizer: cut the text at the span edges
            text, spans, segs, pos = plan[1], plan[2], [], 0
            for a, b in spans:
                segs += [(text[pos:a], False), (text[a:b], True)]
                pos = b
            segs.append((text[pos:], False))
            out[i] = _tokenize_segments(tokenizer, [s for s in segs if s[0]])
        else:
            out[i] = _tokenize_segments(tokenizer, plan[1])
    if batch_text:
        enc = tokenizer(batch_text, add_special_tokens=False, return_offsets_mapping=fast)
        for n, i in enumerate(batch_idx):
            ids = enc["input_ids"][n]
            if plans[i][0] == "plain":
                ids = _plain_ids(tokenizer, ids)
                out[i] = (ids, list(ids))
            else:
                out[i] = (ids, _labels_from_offsets(ids, enc["offset_mapping"][n], plans[i][2]))
    return out


def _tokenize_segments(tokenizer, segments: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []
    for n, (text, trained) in enumerate(segments):
        piece = _encode_piece(tokenizer, text, first=(n == 0))
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    return ids, labels


def tokenize_example(tokenizer, example: dict, train_on: str = "assistant") -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one normalised example; labels are IGNORE (-100) where not trained."""
    return tokenize_planned(tokenizer, [plan_example(tokenizer, example, train_on)])[0]
