"""Generate the bundled demo task: support tickets -> extracted fields as JSON.

Run `python sample_data/make_tickets.py` to (re)write, next to this script:
  tickets.jsonl        clean chat rows (system, user ticket, assistant JSON answer)
  tickets_messy.jsonl  a copy with realistic defects mixed in
  MESSY.md             each injected defect and the line it sits on

Seeded, so the outputs are byte-identical on every run. Every field is decided first
and the ticket text is then written from cue phrases for those values, so the mapping
text -> fields is learnable: a fine-tuned model can beat the base on exact match.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240611
N_ROWS = 480
N_MESSY_BASE = 400

SYSTEM = ("Extract category, priority, product, order_id, sentiment and needs_human "
          "from the support ticket. Answer with one JSON object.")

PRODUCTS = [
    "Nimbus X2 Router", "Pulse Earbuds", "Orbit Smartwatch", "Vista 4K Monitor",
    "Zephyr Air Purifier", "Atlas Backpack", "Forge Mechanical Keyboard", "Glide Wireless Mouse",
    "Harbor Coffee Maker", "Lumen Desk Lamp", "Summit Hiking Boots", "Echo Smart Speaker",
    "Quill E-Reader", "Cascade Water Bottle", "StreamBox Pro", "Nova Phone 12",
    "Breeze Desk Fan", "Trail Camera 2", "Drift Robot Vacuum", "Ember Electric Kettle",
]

# Core sentences per category. {p} product, {o} an inline order mention (may be empty),
# other slots are neutral fillers. None of these carry priority or sentiment cues.
CORE: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {p}{o}.",
        "My card was billed {amt} for the {p} but the price at checkout was {amt2}.",
        "There is an extra charge on my statement for the {p}{o}.",
        "The invoice for my {p}{o} shows the wrong amount.",
        "Why was I billed again for the {p} after I cancelled{o}?",
        "Could you send me a copy of the invoice for the {p}{o}?",
        "The discount code was not applied when I paid for the {p}{o}.",
        "I would like the overcharge on my {p}{o} credited back to my card.",
        "The tax on my {p} purchase{o} looks too high.",
        "My payment for the {p}{o} was declined but the money left my account.",
    ],
    "shipping": [
        "My {p}{o} still hasn't arrived and it has been {n} days.",
        "The tracking for my {p}{o} has not updated since {day}.",
        "The {p}{o} was delivered to the wrong address.",
        "Can I change the delivery address for my {p}{o}?",
        "The courier marked my {p}{o} as delivered but nothing came.",
        "When will my {p}{o} ship?",
        "Only part of my order arrived and the {p} is missing{o}.",
        "The box with my {p}{o} came open and half the packaging was gone.",
        "Is express delivery possible for the {p}{o}?",
        "The delivery date for my {p}{o} keeps moving back.",
    ],
    "technical": [
        "My {p} won't turn on after the latest update.",
        "The {p} keeps disconnecting from wifi every few minutes.",
        "I can't pair the {p} with my phone.",
        "The {p} shows error code E{code} when I start it.",
        "The battery on my {p} drains in under an hour.",
        "The app crashes whenever I open the settings for my {p}.",
        "The {p} makes a loud buzzing noise when it runs.",
        "The firmware update for the {p} stopped halfway.",
        "I bought the {p}{o} last week and the screen stays black.",
        "The {p} restarts by itself several times a day.",
    ],
    "account": [
        "I can't log in to my account because the password reset email never arrives.",
        "My account got locked after too many login attempts.",
        "I want to delete my account and all of my data.",
        "I think someone else has been using my account.",
        "How do I turn on two-factor authentication for my account?",
        "My {p} is not showing up in the devices list of my account.",
        "I can't change the payment method saved in my account.",
        "The {p} I registered is linked to my old account instead of the new one.",
        "Please change the name on my account, it is spelled wrong.",
        "I never received the verification code to confirm my account.",
    ],
    "returns": [
        "I would like to return the {p}{o}, it does not suit me.",
        "How do I send back the {p}{o}?",
        "The {p}{o} arrived damaged and I want to exchange it.",
        "I returned the {p}{o} {n} days ago and the refund has not arrived yet.",
        "Can I get a return label for the {p}{o}?",
        "The {p} I received is not the model I ordered{o}, so I want to return it.",
        "Is the {p}{o} still within the return window?",
        "I sent the {p} back{o} but the return still shows as pending.",
        "Can I swap the {p}{o} for a different size?",
        "The refund for the returned {p}{o} was smaller than what I paid.",
    ],
    "product_info": [
        "Does the {p} work with {compat}?",
        "Is the {p} available in {color}?",
        "What is the warranty on the {p}?",
        "Will the {p} be back in stock soon?",
        "Can the {p} be used in {country}?",
        "Is there a student discount on the {p}?",
        "How much does the {p} weigh?",
        "Does the {p} come with a charger in the box?",
        "What is the difference between the {p} and the older model?",
        "Is the {p} waterproof?",
    ],
}

# Categories whose core sentences mostly have no product slot: product is then null.
ORDER_INLINE = [" (order {id})", " from order {id}", " on order {id}", " under order {id}"]
ORDER_SENTENCE = ["My order number is {id}.", "The order is {id}.", "Order reference: {id}.",
                  "It was order {id}.", "This is about order {id}."]

DETAILS: dict[str, list[str]] = {
    "billing": ["I have the bank statement here if you need it.", "I paid with a credit card.",
                "The charge appeared {day}.", "I checked my email receipt and it says something else."],
    "shipping": ["I was home all day {day}.", "The tracking number does not work on the courier site.",
                 "Nobody in the building has seen it.", "I chose standard delivery."],
    "technical": ["I already tried restarting it.", "I reset it to factory settings twice.",
                  "It worked fine until {day}.", "The light on the front blinks orange."],
    "account": ["I use the same email as always.", "I tried two different browsers.",
                "This started {day}.", "I still have access to my phone number."],
    "returns": ["It is still in the original packaging.", "I have not used it at all.",
                "I dropped it off at the post office {day}.", "The receipt is in the box."],
    "product_info": ["I am thinking of buying one as a gift.", "I could not find this on the website.",
                     "A friend recommended it to me.", "I want to order two of them."],
}

SENTIMENT_CUES = {
    "negative": ["This is really frustrating.", "I am very disappointed.", "Honestly this is unacceptable.",
                 "Terrible experience so far.", "I am fed up with this.", "Not happy at all.",
                 "This is the worst service I have had."],
    "positive": ["Thanks so much for your help!", "I love the product otherwise.",
                 "You have been great so far.", "Really appreciate it!", "Great service as always.",
                 "Thank you, you are the best."],
}
PRIORITY_CUES = {
    "urgent": ["This is urgent, I need it fixed right now.", "Please help immediately, my business depends on it.",
               "I need this resolved ASAP, it is an emergency.", "URGENT, please act now."],
    "high": ["Please look into this today.", "This is important to me.", "I would appreciate a quick answer.",
             "Please prioritise this."],
    "low": ["No rush on this one.", "Whenever you get a chance is fine.", "Not urgent at all.",
            "Just curious, no hurry."],
}
URGENT_PREFIX = ["URGENT: ", "Urgent - "]
HUMAN_ASK = ["Can I speak to a real person?", "Please have a human agent call me.",
             "I want to talk to a manager.", "Please escalate this to a supervisor.",
             "I would rather talk to someone on the phone."]
GREETINGS = ["", "", "", "Hi, ", "Hello, ", "Hey there, ", "Good morning, ", "Dear support team, ", "Hi team, "]
SIGNOFFS = ["", "", "", " Regards, {name}", " Best, {name}", " - {name}", " Cheers, {name}"]
NAMES = ["Sam", "Maria", "Priya", "Tom", "Aiko", "Lucas", "Fatima", "Olek", "Grace", "Diego", "Nina", "Omar"]

FILL = {
    "day": ["on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "last weekend", "yesterday"],
    "compat": ["an iPhone", "Android phones", "Windows 11", "a Mac", "Alexa", "older chargers"],
    "color": ["black", "white", "navy blue", "forest green", "red"],
    "country": ["Canada", "Japan", "Germany", "Australia", "Brazil"],
}


@dataclass
class Ticket:
    category: str
    priority: str
    product: str | None
    order_id: str | None
    sentiment: str
    needs_human: bool
    text: str = field(default="")

    def answer(self) -> str:
        return json.dumps({"category": self.category, "priority": self.priority, "product": self.product,
                           "order_id": self.order_id, "sentiment": self.sentiment,
                           "needs_human": self.needs_human}, separators=(",", ":"), ensure_ascii=False)

    def row(self) -> dict:
        return {"messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": self.text},
                             {"role": "assistant", "content": self.answer()}]}


def _fill(template: str, rng: random.Random, product: str | None, order_inline: str) -> str:
    amt = rng.randint(19, 499)
    return template.format(
        p=product or "", o=order_inline, n=rng.randint(3, 21), code=rng.randint(10, 99),
        amt=f"${amt}.{rng.randint(0, 99):02d}", amt2=f"${amt - rng.randint(5, 15)}.{rng.randint(0, 99):02d}",
        day=rng.choice(FILL["day"]), compat=rng.choice(FILL["compat"]),
        color=rng.choice(FILL["color"]), country=rng.choice(FILL["country"]))


def make_ticket(rng: random.Random) -> Ticket:
    """Decide the fields, then write a 1-4 sentence ticket that carries their cues."""
    category = rng.choice(list(CORE))
    template = rng.choice(CORE[category])
    product = rng.choice(PRODUCTS) if "{p}" in template else None
    priority = rng.choices(["low", "medium", "high", "urgent"], weights=[2, 4, 3, 2])[0]
    sentiment = rng.choices(["negative", "neutral", "positive"], weights=[4, 4, 2])[0]
    asks_human = rng.random() < 0.2
    needs_human = asks_human or priority == "urgent"

    # Order ids: likely where a purchase is involved and the template has a slot for it.
    order_id = None
    order_inline = ""
    order_sentence = None
    if category in ("billing", "shipping", "returns", "technical") and rng.random() < 0.6:
        order_id = f"#{rng.choice('ABCKMRT')}{rng.randint(10000, 99999)}"
        if "{o}" in template and rng.random() < 0.7:
            order_inline = rng.choice(ORDER_INLINE).format(id=order_id)
        else:
            order_sentence = rng.choice(ORDER_SENTENCE).format(id=order_id)

    sentences = [_fill(template, rng, product, order_inline)]
    prefix = ""
    cues = []
    if order_sentence:
        cues.append(order_sentence)
    if sentiment != "neutral":
        cues.append(rng.choice(SENTIMENT_CUES[sentiment]))
    if priority == "urgent" and rng.random() < 0.3:
        prefix = rng.choice(URGENT_PREFIX)
    elif priority != "medium":
        cues.append(rng.choice(PRIORITY_CUES[priority]))
    if asks_human:
        cues.append(rng.choice(HUMAN_ASK))
    if len(cues) > 3 and sentiment != "neutral":
        # Keep at most four sentences: drop the sentiment cue, and with it the sentiment.
        cues = [c for c in cues if c not in SENTIMENT_CUES[sentiment]]
        sentiment = "neutral"
    if len(cues) < 3 and rng.random() < 0.5:
        cues.insert(0, _fill(rng.choice(DETAILS[category]), rng, product, ""))
    rng.shuffle(cues)
    sentences += cues

    greeting = rng.choice(GREETINGS)
    body = " ".join(sentences)
    if greeting and not prefix and not body.startswith(("I ", "I'")):
        body = body[0].lower() + body[1:]
    text = greeting + prefix + body + rng.choice(SIGNOFFS).format(name=rng.choice(NAMES))
    t = Ticket(category, priority, product, order_id, sentiment, needs_human, text)
    return t


def make_clean_rows(n: int = N_ROWS, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        t = make_ticket(rng)
        if t.text in seen:
            continue
        seen.add(t.text)
        rows.append(t.row())
    return rows


# ---------------------------------------------------------------- the messy copy

@dataclass
class Line:
    text: str                       # the line without its ending
    crlf: bool = False
    defects: list[tuple[str, str]] = field(default_factory=list)   # (defect id, detail)
    ref: "Line | None" = None       # the line a duplicate was copied from


def _dump(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False)


def _with_user(row: dict, text: str) -> dict:
    r = json.loads(json.dumps(row))
    r["messages"][1]["content"] = text
    return r


NEAR_DUP_SWAPS = {"my": "the", "the": "my", "still": "yet", "want": "wish", "really": "truly",
                  "Please": "Kindly", "can't": "cannot", "is": "was"}


def _one_word_changed(text: str) -> str:
    words = text.split(" ")
    for i, w in enumerate(words):
        if w in NEAR_DUP_SWAPS:
            return " ".join(words[:i] + [NEAR_DUP_SWAPS[w]] + words[i + 1:])
    raise ValueError("no swappable word")


def _long_ticket(rng: random.Random) -> str:
    """About 3000 tokens: a customer pasting their whole history of messages."""
    parts = ["I am pasting every message I sent you this year so you can see the whole story."]
    while sum(len(p) for p in parts) < 14000:
        parts.append(make_ticket(rng).text)
    return " ".join(parts)


def make_messy_lines(clean: list[dict], seed: int = SEED + 1) -> list[Line]:
    rng = random.Random(seed)
    base = [Line(_dump(r)) for r in clean[:N_MESSY_BASE]]
    rows = clean[:N_MESSY_BASE]

    def user(i: int) -> str:
        return rows[i]["messages"][1]["content"]

    def replace(i: int, row: dict | None, defect: str, detail: str, text: str | None = None) -> None:
        base[i].text = text if text is not None else _dump(row)
        base[i].defects.append((defect, detail))

    def edited(i: int, fn) -> dict:
        r = json.loads(json.dumps(rows[i]))
        fn(r)
        return r

    # In-place defects: each one on its own clean row.
    replace(7, None, "invalid_json", "the line is cut off in the middle of a string", text=base[7].text[:-37])
    replace(15, edited(15, lambda r: r["messages"][2].update(content="")),
            "empty_assistant", "the assistant answer is an empty string")
    replace(23, edited(23, lambda r: r["messages"].pop()), "no_assistant", "only system and user turns")
    replace(31, edited(31, lambda r: r["messages"][1].pop("content")),
            "missing_content", "the user message has no `content` key")
    replace(42, edited(42, lambda r: r["messages"][2].update(role="bot")),
            "unknown_role", "the answer's role is \"bot\"")
    replace(55, edited(55, lambda r: r["messages"].insert(1, r["messages"].pop(0))),
            "system_not_first", "the system message comes after the user turn")
    replace(63, edited(63, lambda r: r["messages"].append(
        {"role": "user", "content": "Did you get this?"})), "last_turn_user", "an extra user turn after the answer")
    replace(71, edited(71, lambda r: r["messages"][1].update(content=4815162342)),
            "non_string_content", "the user content is the number 4815162342")
    replace(84, _with_user(rows[84], user(84) + " I ordered it from the café downstairs' shop."
                           .replace("é", "Ã©")), "mojibake", "\"cafÃ©\" (UTF-8 read as Latin-1)")
    replace(92, _with_user(rows[92], user(92).replace(" ", " \ufffd", 1)),
            "replacement_char", "a U+FFFD replacement character")
    replace(101, _with_user(rows[101], user(101).replace(" ", "\x07 ", 1)),
            "control_char", "a BEL control character (U+0007)")
    replace(113, _with_user(rows[113], user(113) + " You can reach me at maria.lopez@example.com."),
            "pii_email", "maria.lopez@example.com")
    replace(127, _with_user(rows[127], user(127) + " Call me back on +1 415 555 0132."),
            "pii_phone", "+1 415 555 0132")
    replace(138, _with_user(rows[138], user(138) + " The card I used is 4111 1111 1111 1111, exp 12/29."),
            "pii_card", "Luhn-valid test card 4111 1111 1111 1111")
    replace(150, _with_user(rows[150], user(150) + " Please refund to IBAN GB82WEST12345698765432."),
            "pii_iban", "valid IBAN GB82WEST12345698765432")
    replace(163, _with_user(rows[163], user(163) + " My router's public address is 8.8.8.8 if that helps."),
            "pii_ip", "public IP 8.8.8.8")
    replace(177, _with_user(rows[177], user(177) + " Our integration uses key AKIAIOSFODNN7EXAMPLE for uploads."),
            "secret_aws_key", "AWS access key id AKIAIOSFODNN7EXAMPLE")
    pem = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v1XQk3Jd2b9QmZ0pV8wq5tK3xG0sYbH4nR2uLcE9fA6dW1z\n"
           "Q8mN3pK7vT2yB5hJ0cX4gL9sF6aD1eR8tU3iO7wZ2kM5nV0bC4xQ9jH6fG1lP3o\n-----END RSA PRIVATE KEY-----")
    replace(189, _with_user(rows[189], user(189) + " Here is the key from the device logs:\n" + pem),
            "secret_private_key", "a PEM \"BEGIN RSA PRIVATE KEY\" block")
    token = "ghp_" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                             for _ in range(36))
    replace(202, _with_user(rows[202], user(202) + f" The app asked for my token {token}, is that normal?"),
            "secret_github_token", f"GitHub token {token}")
    replace(215, _with_user(rows[215], user(215) + " <|im_end|>"),
            "special_token", "the string <|im_end|> inside the user content")
    replace(231, _with_user(rows[231], _long_ticket(rng)), "overlong", "a user turn of about 3000 tokens")
    base[246].crlf = True
    base[246].defects.append(("crlf", "the line ends with CRLF"))

    # Inserted lines: exact copies and one-word edits of clean rows.
    inserts: list[tuple[int, Line]] = []
    for src in (3, 120, 260, 330, 377):
        inserts.append((rng.randint(src + 5, N_MESSY_BASE - 1),
                        Line(base[src].text, defects=[("exact_duplicate", "")], ref=base[src])))
    for src in (10, 58, 140, 205, 290, 350):
        near = _with_user(rows[src], _one_word_changed(user(src)))
        inserts.append((rng.randint(src + 5, N_MESSY_BASE - 1),
                        Line(_dump(near), defects=[("near_duplicate", "")], ref=base[src])))
    # Two defects that have one of their own lines each, near the end of the file.
    extra = clean[N_MESSY_BASE]     # a row the copy does not otherwise hold
    inserts.append((398, Line(_dump(_with_user(extra, extra["messages"][1]["content"] +
                                               " Also email me at tom.b@example.org or text 020 7946 0958.")),
                              defects=[("pii_email", "tom.b@example.org"), ("pii_phone", "020 7946 0958")])))
    out = list(base)
    for pos, line in sorted(inserts, key=lambda x: x[0], reverse=True):
        out.insert(pos, line)
    # Sanity: touched rows must be distinct, or a defect would hide another.
    assert len({id(x) for x in out if x.defects}) == sum(1 for x in out if x.defects)
    return out


def messy_report(lines: list[Line]) -> str:
    index = {id(x): i + 1 for i, x in enumerate(lines)}
    out = ["# tickets_messy.jsonl: the injected defects",
           "",
           f"A copy of the first {N_MESSY_BASE} rows of tickets.jsonl with defects mixed in, written by",
           "make_tickets.py (seeded). Line numbers are 1-based. Every line not listed here is a clean,",
           "valid chat row. The defect ids in the second column are what tests/test_demo.py checks.",
           "",
           "| line | defect | detail |",
           "|---:|---|---|"]
    for i, line in enumerate(lines):
        for defect, detail in line.defects:
            if line.ref is not None:
                how = "identical to" if defect == "exact_duplicate" else "one word changed from"
                detail = f"{how} line {index[id(line.ref)]}"
            out.append(f"| {i + 1} | `{defect}` | {detail.replace('|', chr(92) + '|')} |")
    out.append("")
    return "\n".join(out)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(out_dir: Path = HERE) -> None:
    clean = make_clean_rows()
    _atomic_write(out_dir / "tickets.jsonl", "".join(_dump(r) + "\n" for r in clean).encode())
    lines = make_messy_lines(clean)
    _atomic_write(out_dir / "tickets_messy.jsonl",
                  "".join(x.text + ("\r\n" if x.crlf else "\n") for x in lines).encode())
    _atomic_write(out_dir / "MESSY.md", messy_report(lines).encode())
    print(f"wrote {len(clean)} clean rows and {len(lines)} messy lines to {out_dir}")


if __name__ == "__main__":
    main()
