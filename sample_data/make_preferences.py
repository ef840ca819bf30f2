"""Build sample_data/tickets_prefs.jsonl: preference pairs from the bundled tickets.

Each ticket becomes one pair in the OpenAI-style layout (a prompt conversation, and
chosen/rejected as assistant message lists): chosen is the ticket's correct JSON,
rejected a plausible wrong answer of one of these kinds, drawn with a fixed seed:
one field wrong (category, priority, sentiment, needs_human or order_id), a field
missing, or a polite prose reply instead of JSON (what the demo base model writes).

    python sample_data/make_preferences.py   # rewrites the file; same bytes every time
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "tickets.jsonl"
OUT = HERE / "tickets_prefs.jsonl"
SEED = 7

CHOICES = {
    "category": ["shipping", "returns", "billing", "product_info", "account", "technical"],
    "priority": ["low", "medium", "high", "urgent"],
    "sentiment": ["negative", "neutral", "positive"],
}
PROSE = [
    "Thank you for reaching out. We are sorry for the trouble and will look into it right away.",
    "Thanks for contacting support. A member of our team will get back to you within a day.",
    "We appreciate your message and have forwarded it to the right team.",
    "Sorry to hear that! Could you send us a few more details so we can help?",
]
KINDS = ["category", "priority", "sentiment", "needs_human", "order_id", "missing", "prose"]


def _dump(answer: dict) -> str:
    return json.dumps(answer, separators=(",", ":"))


def wrong_answer(answer: dict, rng: random.Random) -> tuple[str, str]:
    """(kind, text) of a plausible wrong answer to a ticket whose right answer is `answer`."""
    kind = rng.choice(KINDS)
    bad = dict(answer)
    if kind in CHOICES:
        bad[kind] = rng.choice([v for v in CHOICES[kind] if v != answer[kind]])
    elif kind == "needs_human":
        bad[kind] = not answer[kind]
    elif kind == "order_id":
        bad[kind] = None if answer[kind] else f"#{rng.choice('ABC')}{rng.randint(10000, 99999)}"
    elif kind == "missing":
        del bad[rng.choice(["category", "priority", "sentiment", "needs_human"])]
    else:
        return kind, rng.choice(PROSE)
    return kind, _dump(bad)


def build(source: Path = SOURCE) -> list[dict]:
    rng = random.Random(SEED)
    out = []
    for line in source.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        prompt, answer = row["messages"][:-1], row["messages"][-1]["content"]
        _kind, rejected = wrong_answer(json.loads(answer), rng)
        out.append({"prompt": prompt,
                    "chosen": [{"role": "assistant", "content": answer}],
                    "rejected": [{"role": "assistant", "content": rejected}]})
    return out


def main() -> None:
    rows = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} pairs to {OUT}")


if __name__ == "__main__":
    main()
