"""The mask's renders skip apply_chat_template's per-call copies (engine.data.templates.render);
each must be the text apply_chat_template itself gives, and its refusals the same refusals."""
from __future__ import annotations

import pickle

import pytest

from data_fixtures import make_tokenizer
from engine.data.errors import RowError
from engine.data.template import _Renders, _owners, _PUA, ensure_chat_template, plan_row
from engine.data.templates import names
from engine.data.templates.render import fast_renderer

TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look up an order", "parameters": {
    "type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}}}]
CONVERSATIONS = [
    [{"role": "user", "content": "where is my refund?"}, {"role": "assistant", "content": "It is on its way."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>&</b>"},
     {"role": "assistant", "content": "<think>\ngreet\n</think>\n\nHello", "reasoning_content": None},
     {"role": "user", "content": "again"}, {"role": "assistant", "content": "Hello again",
                                             "reasoning_content": "repeat"}],
    [{"role": "user", "content": "order 7?"},
     {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
         "name": "lookup", "arguments": {"order": "7"}}}]},
     {"role": "tool", "name": "lookup", "content": '{"status": "sent"}'},
     {"role": "assistant", "content": "It was sent."}],
]


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer("chatml")


def _real(tok, messages, tools, generation):
    kwargs = {"tools": tools} if tools else {}
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation, **kwargs)
    except Exception as e:
        return f"refused: {str(e).splitlines()[0][:200]}"


def _fast(tok, messages, tools, n, generation):
    try:
        return _Renders(tok, messages, tools).render(n, generation)
    except RowError as e:
        return f"refused: {str(e)[len('the chat template cannot render this conversation ('):-1]}"


@pytest.mark.parametrize("template", names())
def test_every_prefix_renders_as_apply_chat_template_does(tok, template):
    ensure_chat_template(tok, template)
    for messages in CONVERSATIONS:
        tools = TOOLS if any(m.get("tool_calls") for m in messages) else None
        assert fast_renderer(tok, messages, tools) is not None  # the fast path is what is under test
        for n in range(1, len(messages) + 1):
            for generation in (False, True):
                assert _fast(tok, messages, tools, n, generation) == _real(tok, messages[:n], tools, generation)


def test_rows_that_are_not_plain_data_take_apply_chat_template(tok):
    ensure_chat_template(tok, "chatml")

    class Text(str):
        pass

    rich = [{"role": "user", "content": Text("hi")}, {"role": "assistant", "content": ("a", "b")}]
    assert fast_renderer(tok, rich, None) is None
    assert fast_renderer(tok, CONVERSATIONS[0], ({"type": "function"},)) is None
    plain = [{"role": "user", "content": Text("hi")}, {"role": "assistant", "content": "ok"}]
    assert plan_row(tok, {"messages": plain})[0].text == _real(tok, plain, None, False)


def test_a_template_refusal_reads_the_same_and_the_tokenizer_still_pickles(tok):
    ensure_chat_template(tok, "{% if messages[0]['role'] == 'system' %}{{ raise_exception('No system role, "
                              "please') }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                        {"role": "assistant", "content": "a"}]}
    with pytest.raises(RowError, match=r"cannot render this conversation \(No system role, please\)"):
        plan_row(tok, row)
    assert plan_row(tok, {"messages": row["messages"][1:]})[0].text == "ua"
    assert pickle.loads(pickle.dumps(tok)).chat_template == tok.chat_template  # (worker processes get it)


def test_owners_are_the_characters_that_differ():
    render = "<u>ab c</u><a>\U000F0000x</a>"
    marked = "<u>\U000F0000\U000F0000 \U000F0000</u><a>\U000F0000\U000F0001</a>"
    own = _owners(render, marked, 2)
    p, m0, m1 = "\0", chr(_PUA), chr(_PUA + 1)
    # the space is template text; a marker character already in the render is not content
    assert own == p * 3 + m0 * 2 + p + m0 + p * 7 + p + m1 + p * 4
    # a marker of no message of these: aligned instead, and that character is not content
    assert _owners(render, marked.replace("\U000F0001", "\U000F0005"), 2)[15] == p
