"""Dataset checks: the registry of check ids and the runner that applies them all.

A check looks at raw rows (list of dicts, as loaded) and says what is wrong where, as
Findings. Structure checks live in checks_chat, text checks in checks_text, personal
data and secrets in pii, duplicates and leakage in dedup; this module ties them together
so the TUI and `ftwb data check` report the same thing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass
class Finding:
    check: str
    severity: Severity
    row: int                  # 0-based row index (-1: the whole dataset; source record for invalid_json)
    line: int | None          # 1-based source line, where the source has lines
    message: str
    group: int | None = None  # duplicate group id
    span: tuple[int, int] | None = None  # char span inside `field`'s text (PII, secrets)
    field: str | None = None  # where in the row, e.g. "messages[2].content"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["span"] = list(self.span) if self.span else None
        return d


@dataclass(frozen=True)
class CheckInfo:
    id: str
    severity: Severity
    description: str
    formats: tuple[str, ...] = ()  # empty: every format


_CONV = ("chat", "sharegpt", "preference", "kto")
_E, _W = "error", "warning"
CHECKS: dict[str, CheckInfo] = {c.id: c for c in (
    CheckInfo("invalid_json", _E, "a record could not be read (bad JSON, bad bytes, ragged CSV row)"),
    CheckInfo("missing_messages", _E, "no conversation list (messages / conversations) or it is empty", _CONV),
    CheckInfo("missing_role", _E, "a turn has no role (or from) field", _CONV),
    CheckInfo("missing_content", _E, "a turn has no content (or value) field", _CONV),
    CheckInfo("unknown_role", _E, "a turn's role is not system/user/assistant/tool (or a sharegpt alias)", _CONV),
    CheckInfo("non_string_content", _E, "a turn's content is neither text nor a list of content parts", _CONV),
    CheckInfo("no_assistant", _E, "the conversation has no assistant turn to train on", _CONV),
    CheckInfo("empty_assistant", _E, "an assistant turn (or chosen/rejected answer) is empty", _CONV),
    CheckInfo("role_order", _W, "user and assistant turns do not alternate", _CONV),
    CheckInfo("system_not_first", _W, "a system turn is not the first turn, or there is more than one", _CONV),
    CheckInfo("last_not_assistant", _W, "the conversation does not end with an assistant turn", ("chat", "sharegpt")),
    CheckInfo("tool_without_call", _W, "a tool result follows no assistant tool call", _CONV),
    CheckInfo("special_token_in_content", _W, "text contains a literal special token such as <|im_end|> or </s>"),
    CheckInfo("encoding", _W, "mojibake (Ã©, â€™), U+FFFD or control characters in the text"),
    CheckInfo("exact_duplicate", _W, "the same text as an earlier row (after case and whitespace folding)"),
    CheckInfo("near_duplicate", _W, "nearly the same text as an earlier row (MinHash, confirmed by Jaccard)"),
    CheckInfo("train_val_leak", _E, "the row also appears, exactly or nearly, in the validation rows"),
    CheckInfo("pii_email", _W, "an e-mail address"),
    CheckInfo("pii_phone", _W, "a phone number"),
    CheckInfo("pii_credit_card", _W, "a payment card number (Luhn-valid)"),
    CheckInfo("pii_iban", _W, "an IBAN (checksum-valid)"),
    CheckInfo("pii_ip", _W, "a public IP address"),
    CheckInfo("secret_aws_key", _E, "an AWS access key id"),
    CheckInfo("secret_private_key", _E, "a private key block"),
    CheckInfo("secret_token", _E, "an API token (GitHub, Slack, OpenAI, Stripe, Google, Hugging Face, GitLab)"),
    CheckInfo("overlong", _W, "longer than max_seq_len tokens once rendered"),
    CheckInfo("empty_text", _E, "the text field is missing or empty", ("completion", "text")),
    CheckInfo("empty_instruction", _E, "the instruction is missing or empty", ("alpaca",)),
    CheckInfo("empty_output", _E, "the output is missing or empty", ("alpaca",)),
    CheckInfo("chosen_equals_rejected", _E, "chosen and rejected answers are the same", ("preference",)),
    CheckInfo("rejected_is_other_chosen", _W, "a rejected answer is another row's chosen answer", ("preference",)),
    CheckInfo("length_imbalance", _W, "one side of a pair is much longer, or chosen is almost always the longer "
                                      "(or shorter) side", ("preference",)),
    CheckInfo("too_few_rows", _E, "fewer than 10 usable rows: too few to fine-tune on"),
    CheckInfo("multimodal", _E, "the row carries images, audio or video; ftwb trains text models only"),
    CheckInfo("invalid_unicode", _E, "text holds a lone surrogate (invalid Unicode) that no tokenizer can encode"),
    CheckInfo("unusable", _E, "training cannot use the row as its format (the normaliser's reason)"),
    CheckInfo("template_refused", _W, "the chat template refuses the row (its own reason); training drops it"),
    CheckInfo("template_mostly_refused", _E, "the chat template refuses most rows; training would stop"),
    CheckInfo("special_text_in_content", _W, "special-token text inside content; trained as plain text"),
    CheckInfo("end_of_turn_not_trained", _W, "the render closes an assistant turn with no end-of-turn to train"),
    CheckInfo("reasoning_stripped", _W, "the template rewrites earlier turns (strips reasoning); the turn "
                                        "policy says what trains"),
    CheckInfo("template_mismatch", _E, "the masked sequence differs from the template's render"),
)}
# Structure checks whose errors mean "training cannot use this row": the normaliser decides those.
_STRUCTURE = {"missing_messages", "missing_role", "missing_content", "unknown_role", "non_string_content",
              "no_assistant", "empty_assistant", "empty_text", "empty_instruction", "empty_output",
              "chosen_equals_rejected", "multimodal", "invalid_unicode", "unusable"}

MIN_ROWS = 10
_LABEL = {"pii_email": "e-mail address", "pii_phone": "phone number", "pii_credit_card": "card number",
          "pii_iban": "IBAN", "pii_ip": "public IP", "secret_aws_key": "AWS key id",
          "secret_private_key": "private key", "secret_token": "API token"}


def make(check: str, row: int, line: int | None, message: str, **kw: Any) -> Finding:
    return Finding(check, CHECKS[check].severity, row, line, message, **kw)


def problems_to_findings(problems: list[Any]) -> list[Finding]:
    """LoadResult.problems (records the loader could not read) as invalid_json findings."""
    return [make("invalid_json", p.row, p.line, p.message) for p in problems]


def run_checks(rows: list[dict], lines: list[int | None] | None, fmt: str, *, tokenizer: Any = None,
               max_seq_len: int | None = None, val_rows: list[dict] | None = None, near_dup: bool = True,
               shingle: int = 5, threshold: float = 0.8, only: set[str] | None = None,
               shingle_unit: str = "char") -> list[Finding]:
    """Every finding for `rows` (in `fmt`), sorted by row. `only` limits the check ids run.
    The same runner as engine.data.checks_stream.check_stream, fed the rows at once."""
    from engine.data.checks_stream import CheckRun

    run = CheckRun(fmt, tokenizer=tokenizer, max_seq_len=max_seq_len, val_rows=val_rows, near_dup=near_dup,
                   shingle=shingle, threshold=threshold, only=only, shingle_unit=shingle_unit)
    out = run.add(rows, lines)
    out += run.finish()[0]
    out.sort(key=lambda f: (f.row, f.check))
    return out


def too_few_rows_message(usable: int, total: int) -> str | None:
    """The one wording of this finding: `data check` reports it, training warns with it."""
    if usable >= MIN_ROWS:
        return None
    return (f"only {usable} usable rows (of {total}); fine-tuning needs at least {MIN_ROWS}, "
            "and a few hundred to learn much")


def _mask(s: str) -> str:
    """Show enough of a match to find it, not enough to leak it in a report."""
    s = s.replace("\n", " ")
    if len(s) <= 8:
        return s[:2] + "*" * (len(s) - 2)
    return s[:4] + "*" * min(len(s) - 6, 12) + s[-2:]


def counts(findings: list[Finding]) -> dict[str, int]:
    """Findings per check id, errors first, then by count."""
    c = Counter(f.check for f in findings)
    return dict(sorted(c.items(), key=lambda kv: (CHECKS[kv[0]].severity != "error" if kv[0] in CHECKS else 1,
                                                  -kv[1], kv[0])))
