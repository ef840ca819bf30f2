"""Chat formatting and the loss mask: which tokens of an example are trained.

Every training example is ONE render of a conversation by the chat template, tokenised
as the tokenizer tokenises that text. Nothing is stitched from different renders.

Where each message sits inside the render is found by rendering it a second time with
every message's text replaced, character for character, by a private-use character that
names the message (whitespace and the tags templates parse, such as <think>, are kept):
the characters that change are that message's content, wherever the template put it
(a system prompt moved into the last user turn, a merged Gemma system, a tool result).
An assistant turn's trained span then runs
  from the end of its header: the longest common prefix with the render of the
    conversation before it plus the generation prompt (what the model sees when it is
    asked to answer), or, where the template renders that context differently, the last
    generation-prompt text or control token before the answer,
  to the end of the end-of-turn token that closes it (<|im_end|>, <|eot_id|>, </s>,
    <end_of_turn> ...).
So the answer, its reasoning and its tool calls are trained with the end-of-turn, and
headers, dates, default system prompts, user text and tool results are not.

Content is text: a special-token string inside a message (an answer that mentions
<|im_end|>) is tokenised as plain text; only control tokens the template wrote are
control tokens.

Templates that render earlier assistant turns differently from the last one (Qwen3,
QwQ, GLM ... strip earlier reasoning) follow data.turn_policy:
  auto      one render where every assistant turn renders the same as it does when it is
            the last turn; otherwise per_turn
  single    one render, every assistant turn trained as that render shows it
  per_turn  one example per assistant turn: the render of the conversation up to that
            turn, only that turn trained (packing puts them back together)
  last      one render, only the last assistant turn trained
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache

from engine.data.errors import DataError, RowError
from engine.data.templates.render import fast_renderer

IGNORE = -100
TURN_POLICIES = ("auto", "single", "per_turn", "last")

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Strings that close a turn in the families ftwb knows; the tokenizer's eos is added.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>",
               "<｜end▁of▁sentence｜>", "<|END_OF_TURN_TOKEN|>", "<turn|>", "<|return|>", "<|call|>",
               "<|end_of_text|>", "<eos>", "<|eos|>", "<|end_of_turn|>", "[/TOOL_CALLS]", "<|im_end|>")
# Tags templates parse inside content (reasoning split, tool-response detection): kept as
# they are when the content is replaced, so the template takes the same branches.
_PARSED_TAGS = re.compile(r"</?(?:think|thinking|reasoning|tool_response|tool_call|answer)>")
_NON_SPACE = re.compile(r"\S")
_PUA = 0xF0000  # plane-15 private use: one code point per message index
_MAX_MESSAGES = 0xFFFD
_TEMPLATE_TEXT = "\0"  # in an owner string: a character the template wrote
_OWNED_RUN = re.compile(r"([^\0])\1*")  # a run of one message's characters in an owner string


def ensure_chat_template(tokenizer, override: str | None = None) -> str:
    """Set and return the template in effect: the override (a name ftwb ships, e.g.
    'chatml', 'llama3', or Jinja), the tokenizer's own, or ChatML. No tokens are added
    (that would resize the embeddings): where the markers are not tokens they are text."""
    from engine.data.templates import resolve

    if override:
        try:
            template = resolve(override)
        except ValueError as e:
            raise DataError(f"model.chat_template: {e}") from None
    else:
        template = getattr(tokenizer, "chat_template", None)
        if isinstance(template, dict):  # some tokenizers ship several named templates
            template = template.get("default") or next(iter(template.values()), None)
        template = template or CHATML_TEMPLATE
    tokenizer.chat_template = template
    return template


# ---------------------------------------------------------------- rendering

def _render(tokenizer, messages: list[dict], tools, generation: bool) -> str:
    kwargs = {"tools": tools} if tools else {}
    try:
        out = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation, **kwargs)
    except Exception as e:  # the template's own raise_exception(), or a Jinja error
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise RowError(f"the chat template cannot render this conversation ({msg})") from None
    if not isinstance(out, str):
        raise RowError("the chat template did not render text")
    return out


def _try_render(tokenizer, messages, tools, generation) -> str | None:
    try:
        return _render(tokenizer, messages, tools, generation)
    except RowError:
        return None


class _Renders:
    """The renders of one row's conversation and its prefixes, each done once: the context
    before a turn is the same render for the whole conversation and for a per-turn example.
    Every one is a real render of the template (see engine.data.templates.render)."""

    def __init__(self, tokenizer, messages: list[dict], tools):
        self.tokenizer, self.messages, self.tools = tokenizer, messages, tools
        self._fast = fast_renderer(tokenizer, messages, tools)
        self._marked: list[dict] | None = None
        self._prepared: dict[bool, list[dict]] = {}  # marked -> the messages as the fast render takes them
        self._done: dict[tuple[int, bool, bool], tuple[str | None, RowError | None]] = {}
        self.eot_strings = _eot_strings(tokenizer)

    def render(self, n: int, generation: bool, marked: bool = False) -> str:
        """The render of the first n messages (their marked copies where `marked`); RowError
        where the template refuses it."""
        key = (n, generation, marked)
        if key not in self._done:
            if marked and self._marked is None:
                self._marked = [_marked_message(m, i) for i, m in enumerate(self.messages)]
            try:
                self._done[key] = (self._render(n, generation, marked), None)
            except RowError as e:
                self._done[key] = (None, e)
        text, err = self._done[key]
        if err is not None:
            raise RowError(str(err)) from None
        return text

    def try_render(self, n: int, generation: bool, marked: bool = False) -> str | None:
        try:
            return self.render(n, generation, marked)
        except RowError:
            return None

    def _render(self, n: int, generation: bool, marked: bool) -> str:
        msgs = self._marked if marked else self.messages
        if self._fast is None or n == 0:
            return _render(self.tokenizer, msgs[:n], self.tools, generation)
        if marked not in self._prepared:
            self._prepared[marked] = self._fast.prepare(msgs)
        try:
            return self._fast.render_prepared(self._prepared[marked][:n], generation)
        except Exception as e:  # as _render words it: the template's raise_exception(), a Jinja error
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise RowError(f"the chat template cannot render this conversation ({msg})") from None


def _mark(text: str, idx: int) -> str:
    """Every non-space character of `text` (outside parsed tags) as the code point of message idx."""
    ch = chr(_PUA + idx)
    if "<" not in text:
        return _NON_SPACE.sub(ch, text)
    out, pos = [], 0
    for m in _PARSED_TAGS.finditer(text):
        out.append(_NON_SPACE.sub(ch, text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_NON_SPACE.sub(ch, text[pos:]))
    return "".join(out)


def _mark_value(value, idx: int):
    if isinstance(value, str):
        return _mark(value, idx)
    if isinstance(value, dict):
        return {k: _mark_value(v, idx) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_value(v, idx) for v in value]
    return value


def _marked_message(m: dict, idx: int) -> dict:
    out = dict(m)
    if isinstance(m.get("content"), str):
        out["content"] = _mark(m["content"], idx)
    if isinstance(m.get("reasoning_content"), str):
        out["reasoning_content"] = _mark(m["reasoning_content"], idx)
    if m.get("tool_calls"):
        calls = []
        for c in m["tool_calls"]:
            c = dict(c)
            fn = c.get("function")
            if isinstance(fn, dict) and "arguments" in fn:
                c["function"] = {**fn, "arguments": _mark_value(fn["arguments"], idx)}
            calls.append(c)
        out["tool_calls"] = calls
    return out


def _owners(render: str, marked: str | None, count: int) -> str:
    """An owner string as long as `render`: at each character, chr(_PUA + k) where it is the
    content of message k (of `count`), _TEMPLATE_TEXT where the template wrote it."""
    n = len(render)
    if marked is None or count == 0:
        return _TEMPLATE_TEXT * n
    if len(marked) == n:
        import numpy as np  # (here, not at import: the TUI imports this module lazily, never numpy at start-up)

        # Where the template copied the content, the characters that differ are the markers.
        got = np.frombuffer(marked.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        differ = got != np.frombuffer(render.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        if bool(((got[differ] - np.uint32(_PUA)) < count).all()):  # (unsigned: below _PUA wraps high)
            own = np.where(differ, got, np.uint32(0)).astype("<u4", copy=False)
            return own.tobytes().decode("utf-32-le", "surrogatepass")
    return _owner_string(_owners_aligned(render, marked, count))


def _owner_string(owner: list[int]) -> str:
    return "".join(chr(_PUA + k) if k >= 0 else _TEMPLATE_TEXT for k in owner)


def _owners_aligned(render: str, marked: str, count: int) -> list[int]:
    """The template did something with the content other than copy it (escaped it, measured
    it): align the two renders instead."""
    owner = [-1] * len(render)
    sm = SequenceMatcher(None, render, marked, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        ks = [ord(c) - _PUA for c in marked[j1:j2] if 0 <= ord(c) - _PUA < count]
        if tag == "replace" and i2 - i1 == j2 - j1:
            for d in range(i2 - i1):
                k = ord(marked[j1 + d]) - _PUA
                owner[i1 + d] = k if 0 <= k < count else (ks[0] if ks else -1)
        elif ks:
            for j in range(i1, i2):
                owner[j] = ks[0]
    return owner


def _owned(own: str, s: int, e: int) -> bool:
    """Whether any character of [s, e) is message content."""
    return own.count(_TEMPLATE_TEXT, s, e) != e - s


def _common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of a and b (slice comparisons, not a loop
    over characters)."""
    limit = min(len(a), len(b))
    if a[:limit] == b[:limit]:
        return limit
    lo, hi = 0, limit  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


# ---------------------------------------------------------------- special tokens

def _special_strings(tokenizer) -> list[str]:
    cached = getattr(tokenizer, "_ftwb_specials", None)
    if cached is not None and cached[0] == len(tokenizer):
        return cached[1]
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            found.add(str(tok))
    out = sorted((s for s in found if s), key=len, reverse=True)
    try:
        tokenizer._ftwb_specials = (len(tokenizer), out)
    except Exception:  # a tokenizer that refuses attributes simply recomputes
        pass
    return out


@lru_cache(maxsize=64)
def _alternation(needles: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(re.escape(s) for s in needles))


def _find_all(text: str, needles: list[str]) -> list[tuple[int, int, str]]:
    if not needles:
        return []
    return [(m.start(), m.end(), m.group(0)) for m in _alternation(tuple(needles)).finditer(text)]


@lru_cache(maxsize=64)
def _eot_for(eos) -> list[str]:
    out = list(END_OF_TURN)
    if isinstance(eos, str) and eos:
        out.append(eos)
    return sorted(set(out), key=len, reverse=True)


def _eot_strings(tokenizer) -> list[str]:
    eos = getattr(tokenizer, "eos_token", None)
    return _eot_for(eos if isinstance(eos, str) else None)


# ---------------------------------------------------------------- locating turns

@dataclass
class Plan:
    """One training example: a render and what of it is trained.
    spans: trained character spans; literal: special-token strings inside content
    (tokenised as text); turn: the trained assistant turn for per-turn examples;
    notes: lint flags shown in the token view and data check."""
    text: str
    spans: list[tuple[int, int]]
    literal: list[tuple[int, int]] = field(default_factory=list)
    plain: bool = False
    turn: int | None = None
    notes: list[str] = field(default_factory=list)
    policy: str = ""


@dataclass
class _Located:
    text: str
    spans: dict[int, tuple[int, int]]
    literal: list[tuple[int, int]]
    no_eot: list[int]
    answer: dict[int, str] = field(default_factory=dict)  # the turn's text before its end-of-turn


def _locate(renders: _Renders, count: int, want: list[int], gen_prompt: str,
            close_text: str = "") -> _Located:
    """Render the first `count` messages once and find the trained span of each assistant
    turn in `want`. close_text: the text the template writes after an answer (see _closing_text)."""
    tokenizer, messages = renders.tokenizer, renders.messages[:count]
    text = renders.render(count, False)
    own = _owners(text, renders.try_render(count, False, marked=True), count)

    specials = _find_all(text, _special_strings(tokenizer))
    literal = [(s, e) for s, e, _ in specials if _owned(own, s, e)]
    control = [(s, e) for s, e, _ in specials if not _owned(own, s, e)]
    eots = [(s, e) for s, e, _ in _find_all(text, renders.eot_strings) if not _owned(own, s, e)]

    first: dict[int, int] = {}
    last: dict[int, int] = {}
    if count <= 64:  # a search per message, in C
        for k in range(count):
            j = own.find(chr(_PUA + k))
            if j >= 0:
                first[k], last[k] = j, own.rfind(chr(_PUA + k)) + 1
    else:  # a long conversation: one pass over runs of one message's characters
        for m in _OWNED_RUN.finditer(own):
            k = ord(m.group(1)) - _PUA
            first.setdefault(k, m.start())
            last[k] = m.end()
    spans: dict[int, tuple[int, int]] = {}
    answers: dict[int, str] = {}
    no_eot: list[int] = []
    for i in want:
        prev_end = max((last[k] for k in last if k < i), default=0)
        later = [first[k] for k in first if k > i]
        next_start = min(later) if later else len(text)
        if i in first:
            p, q = _with_tags(text, first[i], last[i], messages[i])
        else:  # nothing of this turn's own text is visible (empty answer): start after the context
            p = q = None
        # start: the end of the context the model answers from
        context = renders.try_render(i, True) if i else None
        a = None
        if context:
            n = _common_prefix(context, text)
            if n < len(context):  # diverged inside the context: back off to where a marker or line ends
                while n > prev_end and text[n - 1] not in ">\n]" and not text[n - 1].isspace():
                    n -= 1
            if n >= prev_end and (p is None or n <= p or re.fullmatch(r"(?:\s|</?\w+>)*", text[p:n])):
                a = n  # (a generation prompt that opens the reasoning tag itself: the tag is not trained)
        if a is None:
            hi = p if p is not None else next_start
            # the generation prompt, or its longest head the render shows (QwQ's adds <think>)
            for size in range(len(gen_prompt), 2, -1):
                if gen_prompt[size - 1] not in ">\n]:" and size < len(gen_prompt):
                    continue  # only heads that end where a marker or line ends
                k = text.rfind(gen_prompt[:size], prev_end, hi)
                if k >= 0:
                    a = k + size
                    break
            if a is None:
                before = [e for s, e in control if prev_end <= s and e <= hi]
                a = before[-1] if before else (prev_end if p is None else min(prev_end, p) if prev_end <= p else p)
        if p is None:
            p = q = a
        # end: the end-of-turn token that closes the turn
        if messages[i].get("tool_calls") and i not in first:
            raise RowError(f"the chat template does not render tool calls (assistant message {i} has only "
                           "tool_calls); use a template that supports tools, or drop the row")
        closing = [e for s, e in eots if s >= q and e <= next_start]
        glue = text[q:next_start]
        if closing and (not close_text or text.find(close_text, q, next_start) < 0
                        or closing[0] <= text.find(close_text, q, next_start) + len(close_text)):
            b = closing[0]
        elif close_text and glue.lstrip().startswith(close_text):
            b = q + (len(glue) - len(glue.lstrip())) + len(close_text)
        elif [e for s, e in control if s == q + len(glue) - len(glue.lstrip())]:
            # no known end-of-turn: the control token that directly follows the answer closes it
            b = [e for s, e in control if s == q + len(glue) - len(glue.lstrip())][0]
        else:
            b = q
            no_eot.append(i)
        spans[i] = (a, b)
        answers[i] = text[a:q]
    return _Located(text, spans, literal, no_eot, answers)


def _with_tags(text: str, p: int, q: int, message: dict) -> tuple[int, int]:
    """Widen [p, q) over the parsed tags (<think> ...) that open or close the message's own
    text: they are kept as they are in the marked render, so they show as template text."""
    content = message.get("content") or ""
    lead = re.match(r"\s*((?:</?[A-Za-z_]+>\s*)+)", content)
    if lead and _PARSED_TAGS.search(lead.group(1)):
        head = text[:p].rstrip()
        for tag in reversed(_PARSED_TAGS.findall(lead.group(1))):
            if not head.endswith(tag):
                break
            p = len(head) - len(tag)
            head = text[:p].rstrip()
    tail = re.search(r"((?:\s*</?[A-Za-z_]+>)+)\s*$", content)
    if tail and _PARSED_TAGS.search(tail.group(1)):
        rest = text[q:]
        for tag in _PARSED_TAGS.findall(tail.group(1)):
            stripped = rest.lstrip()
            if not stripped.startswith(tag):
                break
            q += len(rest) - len(stripped) + len(tag)
            rest = text[q:]
    return p, q


def _closing_text(tokenizer) -> str:
    """The text this template writes right after an assistant answer, up to the end of its
    first line (<seed:eos>, [e~[, </assistant> ...): its end-of-turn where no known one fits."""
    key = hash(str(tokenizer.chat_template))
    cached = getattr(tokenizer, "_ftwb_closing", None)
    if cached and cached[0] == key:
        return cached[1]
    answer = "Hello there"
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": answer}]
    text = _try_render(tokenizer, probe, None, False) or ""
    k = text.rfind(answer)
    close = ""
    if k >= 0:
        rest = text[k + len(answer):].lstrip(" \t")
        close = rest.split("\n", 1)[0].strip() if rest.strip() else ""
    try:
        tokenizer._ftwb_closing = (key, close)
    except Exception:
        pass
    return close


def _generation_prompt(tokenizer) -> str:
    """The text the template adds for add_generation_prompt after a plain user turn."""
    key = hash(str(tokenizer.chat_template))
    cached = getattr(tokenizer, "_ftwb_genprompt", None)
    if cached and cached[0] == key:
        return cached[1]
    probe = [{"role": "user", "content": "Hi"}]
    with_gp = _try_render(tokenizer, probe, None, True) or ""
    without = _try_render(tokenizer, probe, None, False) or ""
    gp = with_gp[len(without):] if with_gp.startswith(without) else ""
    try:
        tokenizer._ftwb_genprompt = (key, gp)
    except Exception:
        pass
    return gp


def plan_row(tokenizer, example: dict, train_on: str = "assistant", turn_policy: str = "auto") -> list[Plan]:
    """The training examples of one normalised row (several where the turn policy is per_turn)."""
    if "text" in example and "messages" not in example:
        return [Plan(example["text"], [], plain=True)]
    if turn_policy not in TURN_POLICIES:
        raise DataError(f"data.turn_policy: {turn_policy!r} is not one of {', '.join(TURN_POLICIES)}")
    messages, tools = example["messages"], example.get("tools")
    if len(messages) > _MAX_MESSAGES:
        raise RowError(f"{len(messages)} messages in one conversation; at most {_MAX_MESSAGES}")
    renders = _Renders(tokenizer, messages, tools)
    if train_on == "all":
        text = renders.render(len(messages), False)
        loc = _locate(renders, len(messages), [], "")
        return [Plan(text, [(0, len(text))], loc.literal, policy="all")]
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not turns:
        raise RowError("no assistant turn to train")
    gp = _generation_prompt(tokenizer), _closing_text(tokenizer)
    end = turns[-1] + 1
    full = _locate(renders, end, turns, *gp)
    notes = [f"end-of-turn not trained (assistant turn {i})" for i in full.no_eot]
    if turn_policy == "last":
        return [Plan(full.text, [full.spans[turns[-1]]], full.literal, notes=notes, policy="last")]
    if turn_policy == "single" or len(turns) == 1:
        rewritten = _rewritten(renders, turns, full, gp) if turn_policy == "single" else []
        if rewritten:
            notes.append(f"reasoning stripped from earlier turns (policy single applied; turns {rewritten} "
                         "trained as the full render shows them)")
        return [Plan(full.text, [full.spans[i] for i in turns], full.literal, notes=notes,
                     policy="single" if len(turns) > 1 else "")]
    # auto / per_turn: each earlier turn rendered as the last one
    alone = {i: _locate(renders, i + 1, [i], *gp) for i in turns[:-1]}
    alone[turns[-1]] = full
    # (compared without the end-of-turn: templates that close a turn only when more follows)
    same = all(full.answer[i] == alone[i].answer[i] for i in turns)
    if turn_policy == "auto" and same:
        return [Plan(full.text, [full.spans[i] for i in turns], full.literal, notes=notes, policy="single")]
    note = [] if same else ["reasoning stripped from earlier turns (policy per_turn applied: one example per turn)"]
    out = []
    for i in turns:
        loc = alone[i]
        n = [f"end-of-turn not trained (assistant turn {i})" for i in loc.no_eot]
        out.append(Plan(loc.text, [loc.spans[i]], loc.literal, turn=i, notes=note + n, policy="per_turn"))
    return out


def _rewritten(renders: _Renders, turns, full: _Located, gp: tuple) -> list[int]:
    out = []
    for i in turns[:-1]:
        loc = _locate(renders, i + 1, [i], *gp)
        if full.answer[i] != loc.answer[i]:
            out.append(i)
    return out


def plan_example(tokenizer, example: dict, train_on: str = "assistant", turn_policy: str = "auto") -> Plan:
    """The row's last (longest) training example; see plan_row for all of them."""
    return plan_row(tokenizer, example, train_on, turn_policy)[-1]


# ---------------------------------------------------------------- tokenising

def _labels_from_offsets(ids: list[int], offsets, spans) -> list[int]:
    labels = [IGNORE] * len(ids)
    spans = sorted(spans)
    k = 0
    for j, (start, _end) in enumerate(offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if start >= spans[k][0]:
            labels[j] = ids[j]
    return labels


def _plain_ids(tokenizer, ids: list[int]) -> list[int]:
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = list(ids)
    if bos is not None and (not out or out[0] != bos):
        out.insert(0, bos)
    if eos is not None:
        out.append(eos)
    return out


def _encode_with_literals(tokenizer, text: str, literal: list[tuple[int, int]]):
    """Token ids and character offsets of `text` where the special-token strings at
    `literal` are plain text: the text is cut at the template's own control tokens, each
    piece between them is encoded with special tokens switched off."""
    specials = _find_all(text, _special_strings(tokenizer))
    lit = set(literal)
    control = [(s, e) for s, e, _ in specials if (s, e) not in lit]
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    nl = tokenizer("\n", add_special_tokens=False)["input_ids"]

    def piece(a: int, b: int) -> None:
        if a >= b:
            return
        chunk = text[a:b]
        if a == 0 or not nl:
            enc = tokenizer(chunk, add_special_tokens=False, split_special_tokens=True,
                            return_offsets_mapping=True)
            ids.extend(enc["input_ids"])
            offsets.extend((a + s, a + e) for s, e in enc["offset_mapping"])
            return
        # Encoded after a newline that is then removed, so SentencePiece tokenizers add no
        # word-start space of their own in the middle of a text.
        enc = tokenizer("\n" + chunk, add_special_tokens=False, split_special_tokens=True,
                        return_offsets_mapping=True)
        got, offs = enc["input_ids"], enc["offset_mapping"]
        if got[:len(nl)] != nl or (len(offs) > len(nl) and offs[len(nl)][0] < 1):
            # the newline merged with the piece's own leading whitespace: encode it alone
            enc = tokenizer(chunk, add_special_tokens=False, split_special_tokens=True,
                            return_offsets_mapping=True)
            ids.extend(enc["input_ids"])
            offsets.extend((a + s, a + e) for s, e in enc["offset_mapping"])
            return
        ids.extend(got[len(nl):])
        offsets.extend((a + max(s - 1, 0), a + max(e - 1, 0)) for s, e in offs[len(nl):])

    for s, e in control:
        piece(pos, s)
        ids.append(tokenizer.convert_tokens_to_ids(text[s:e]))
        offsets.append((s, e))
        pos = e
    piece(pos, len(text))
    return ids, offsets


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    plan: Plan


def tokenize_plans(tokenizer, plans: list[Plan]) -> list[Tokenized]:
    """Tokenise planned examples; the common case goes through the tokenizer in one batch."""
    fast = getattr(tokenizer, "is_fast", False)
    out: list = [None] * len(plans)
    batch_idx = [i for i, p in enumerate(plans) if fast and not p.literal]
    if batch_idx:
        enc = tokenizer([plans[i].text for i in batch_idx], add_special_tokens=False, return_offsets_mapping=True)
        for n, i in enumerate(batch_idx):
            ids, plan = enc["input_ids"][n], plans[i]
            if plan.plain:
                ids = _plain_ids(tokenizer, ids)
                out[i] = Tokenized(ids, list(ids), plan)
            else:
                out[i] = Tokenized(ids, _labels_from_offsets(ids, enc["offset_mapping"][n], plan.spans), plan)
    for i, plan in enumerate(plans):
        if out[i] is not None:
            continue
        if not fast:
            raise DataError("ftwb needs a fast tokenizer (tokenizer.json) to locate the trained tokens; "
                            "this one has no offset mapping")
        ids, offsets = _encode_with_literals(tokenizer, plan.text, plan.literal)
        if plan.plain:
            ids = _plain_ids(tokenizer, ids)
            out[i] = Tokenized(ids, list(ids), plan)
        else:
            out[i] = Tokenized(ids, _labels_from_offsets(ids, offsets, plan.spans), plan)
    return out


def tokenize_planned(tokenizer, plans: list[Plan]) -> list[tuple[list[int], list[int]]]:
    return [(t.input_ids, t.labels) for t in tokenize_plans(tokenizer, plans)]


def tokenize_row(tokenizer, example: dict, train_on: str = "assistant",
                 turn_policy: str = "auto") -> list[Tokenized]:
    return tokenize_plans(tokenizer, plan_row(tokenizer, example, train_on, turn_policy))


def tokenize_example(tokenizer, example: dict, train_on: str = "assistant",
                     turn_policy: str = "auto") -> tuple[list[int], list[int]]:
    """(input_ids, labels) of the row's last (longest) training example; labels are IGNORE
    (-100) where not trained."""
    t = tokenize_row(tokenizer, example, train_on, turn_policy)[-1]
    return t.input_ids, t.labels
