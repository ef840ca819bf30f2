"""apply_chat_template(..., tokenize=False) without its per-call copies, for plain rows.

transformers copies every message (and the tools) twice before each render, to turn rich
objects into plain data; rows read from JSON are plain data already, and its Jinja sandbox
is immutable, so the template sees the same values either way. A row's mask takes several
renders, so this does the same steps once: drop None-valued keys, alias the reasoning
fields, render the compiled template with the special tokens. It is used only where it
gives the same text: a tokenizer that does not override apply_chat_template, a template
string (not a dict of named ones), plain rows, and a probe render that matches the real
one; anything else goes through apply_chat_template itself.
"""
from __future__ import annotations

_PROBES = (
    ([{"role": "user", "content": "Hi"}], True),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}], False),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello there", "reasoning_content": "greet"}], False),
)
_TOOL = [{"type": "function", "function": {"name": "echo", "description": "Echo a text", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]


def _outcome(render, *args):
    """The text a render gives, or the error it raises (type and message)."""
    try:
        return render(*args)
    except Exception as e:
        return (type(e), str(e))


def is_plain(value) -> bool:
    """JSON data (str, numbers, bools, None, dicts with str keys, lists): what a template gets
    unchanged from transformers' copies."""
    t = type(value)
    if t is str or value is None or t is int or t is float or t is bool:
        return True
    if t is dict:
        return all(type(k) is str and is_plain(v) for k, v in value.items())
    if t is list:
        return all(is_plain(v) for v in value)
    return False


class FastRender:
    """render(messages, generation) -> text, as apply_chat_template renders it. prepare()
    does the per-message steps once for a row; render_prepared() renders a prefix of them."""

    def __init__(self, found, tokenizer, tools):
        self._compiled, self._alias, self._globals = found
        self._kwargs = dict(tokenizer.special_tokens_map)
        self._tools = tools or None

    def prepare(self, messages: list[dict]) -> list[dict]:
        # (each message on its own: a prefix of the prepared list is the prepared prefix)
        return self._alias([{k: v for k, v in m.items() if v is not None} for m in messages])

    def render_prepared(self, chat: list[dict], generation: bool) -> str:
        from jinja2.runtime import new_context

        t = self._compiled
        env = t.environment
        # Template.render(**vars) builds this same context, copying the template's globals
        # out of their ChainMap on every call; here that copy is made once per template.
        ctx = new_context(env, t.name, t.blocks, dict(self._globals, messages=chat, tools=self._tools, documents=None,
                                                       add_generation_prompt=generation, **self._kwargs),
                          True, t.globals, None)
        try:
            return env.concat(t.root_render_func(ctx))
        except Exception:
            env.handle_exception()  # (raises the template's error, as Template.render does)
            raise

    def __call__(self, messages: list[dict], generation: bool) -> str:
        return self.render_prepared(self.prepare(messages), generation)


# (tokenizer class, template) -> what _compiled found: (compiled template, alias function, its globals)
_CHECKED: dict[tuple[type, str], tuple | None] = {}


def _compiled(tokenizer):
    """(compiled template, alias function, its globals as a dict), or None where the fast path does not apply to
    this tokenizer; checked once per tokenizer class and template against apply_chat_template.
    Kept here, not on the tokenizer, so the tokenizer still pickles for worker processes."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return None
    key = (type(tokenizer), template)
    if key in _CHECKED:
        return _CHECKED[key]
    found = None
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.utils.chat_template_utils import _alias_reasoning_fields, _compile_jinja_template

        cls = type(tokenizer)
        if (getattr(cls, "apply_chat_template", None) is PreTrainedTokenizerBase.apply_chat_template
                and getattr(cls, "get_chat_template", None) is PreTrainedTokenizerBase.get_chat_template):
            compiled = _compile_jinja_template(template)
            candidate = (compiled, _alias_reasoning_fields, dict(compiled.globals))
            rendered = 0
            for tools in (None, _TOOL):
                fast = FastRender(candidate, tokenizer, tools)
                kwargs = {"tools": tools} if tools else {}
                for msgs, gen in _PROBES:
                    real = _outcome(lambda: tokenizer.apply_chat_template(
                        msgs, tokenize=False, add_generation_prompt=gen, **kwargs))
                    if _outcome(fast, msgs, gen) != real:
                        raise LookupError("renders differ")
                    rendered += isinstance(real, str)
            found = candidate if rendered else None
    except Exception:  # renders that differ, or another transformers: the real call
        found = None
    _CHECKED[key] = found
    return found


def fast_renderer(tokenizer, messages, tools) -> FastRender | None:
    """A FastRender for this row's messages and tools, or None (render with apply_chat_template)."""
    if not messages or not is_plain(messages) or not all(type(m) is dict for m in messages):
        return None
    if tools and not (type(tools) is list and all(type(t) is dict for t in tools) and is_plain(tools)):
        return None
    found = _compiled(tokenizer)
    return FastRender(found, tokenizer, tools) if found else None
