"""Text checks: special tokens, encoding damage, empty fields, and overlong rows."""
from engine.data.checks import run_checks


def _checks(rows, fmt, **kw):
    out = {}
    for f in run_checks(rows, None, fmt, near_dup=False, **kw):
        out.setdefault(f.row, set()).add(f.check)
    return out


def test_special_tokens_found_and_plain_text_not():
    rows = [{"text": "hello <|im_end|> world"}, {"text": "ends </s>"}, {"text": "[INST] x"},
            {"text": "a <b>bold</b> tag and <summary> are fine"}]
    by = _checks(rows, "completion")
    assert all("special_token_in_content" in by[i] for i in range(3))
    assert "special_token_in_content" not in by.get(3, set())


def test_encoding_mojibake_replacement_and_control_chars():
    rows = [{"text": "cafÃ© au lait"}, {"text": "donâ€™t"}, {"text": "lost \ufffd byte"}, {"text": "bell \x07 here"},
            {"text": "café, naïve, Ångström, tabs\tand\r\nnewlines are fine"}, {"text": "São Paulo, Ãgua"}]
    by = _checks(rows, "completion")
    assert all("encoding" in by[i] for i in range(4))
    assert "encoding" not in by.get(4, set()) and "encoding" not in by.get(5, set())


def test_empty_fields_by_format():
    by = _checks([{"text": "  "}, {"text": "ok"}], "completion")
    assert "empty_text" in by[0] and "empty_text" not in by.get(1, set())
    by = _checks([{"instruction": "", "input": "", "output": "x"}, {"instruction": "q", "output": ""},
                  {"instruction": "q", "input": "", "output": "a"}], "alpaca")
    assert "empty_instruction" in by[0] and "empty_output" in by[1] and 2 not in by or by[2] == {"too_few_rows"}


class _WordTokenizer:
    """A real (if simple) tokenizer: one token per whitespace-separated word."""
    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


def test_overlong_says_whether_the_assistant_turn_is_cut():
    long = " ".join(["word"] * 50)
    rows = [{"messages": [{"role": "user", "content": long}, {"role": "assistant", "content": "short"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": long}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    fs = [f for f in run_checks(rows, None, "chat", tokenizer=_WordTokenizer(), max_seq_len=20) if f.check == "overlong"]
    msgs = {f.row: f.message for f in fs}
    assert set(msgs) == {0, 1}
    assert "every assistant turn" in msgs[0]
    assert "cut the last assistant turn short" in msgs[1]


def test_overlong_skipped_without_tokenizer():
    rows = [{"text": "w " * 5000}]
    assert not [f for f in run_checks(rows, None, "completion") if f.check == "overlong"]
