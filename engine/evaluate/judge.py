"""LLM-as-judge through any OpenAI-compatible endpoint (vLLM, llama.cpp, a hosted API, or
`ftwb serve --openai`).

Pairwise: the judge sees the base and the fine-tuned answer as "A" and "B" in a random
order (seeded) and says which is better. Pointwise: it rates each answer from 1 to 10.
Every request's raw reply is saved to RUN_DIR/eval/judge.jsonl. The URL and model come from
eval.judge or FTWB_JUDGE_URL / FTWB_JUDGE_MODEL; the key only from the environment, and it
is never written anywhere. No endpoint: judging is skipped with a note, never guessed.
"""
from __future__ import annotations

import json
import random
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from engine import config as C
from engine.evaluate.sets import JUDGE_URL_ENV, judge_settings

JUDGE_FILE = "judge.jsonl"
DEFAULT_RUBRIC = ("Judge which response answers the user's request better: correct, complete, following the "
                  "requested format, and safe. When a reference answer is given, prefer the response that "
                  "agrees with it.")
# A verdict is "[[A]]", a reply that starts with the letter alone ("B", "A.", "Verdict: tie"),
# or "Response B is better"; a reply starting "A member of..." names no verdict.
_PAIR_BRACKETS = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_PAIR_FIRST = re.compile(r"^[\s*#>\[(]*(?:(?i:verdict|answer|winner|better|response)\s*[:\-]?\s*)*"
                         r"(A|B|(?i:tie))[\])*]*\s*(?:$|[.,:;!\n])")
_PAIR_SENTENCE = re.compile(r"\b(?:response|answer)\s+(A|B)\s+is\s+better\b", re.IGNORECASE)
_SCORE = re.compile(r"\b(10|[1-9])\b")


class JudgeUnavailable(RuntimeError):
    """The endpoint cannot be reached or does not speak the OpenAI chat API."""


class Client:
    """A minimal OpenAI chat-completions client (stdlib only)."""

    def __init__(self, url: str, model: str | None, api_key: str | None, timeout: float):
        self.base = url.rstrip("/")
        if not self.base.endswith("/v1") and "/v1/" not in self.base + "/":
            self.base += "/v1"
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def _request(self, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers,
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            raise JudgeUnavailable(f"{self.base}{path}: HTTP {e.code} {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise JudgeUnavailable(f"{self.base}{path}: {getattr(e, 'reason', e)}") from None

    def first_model(self) -> str:
        data = self._request("/models").get("data") or []
        if not data or not isinstance(data[0], dict) or not data[0].get("id"):
            raise JudgeUnavailable(f"{self.base}/models lists no model; set eval.judge.model")
        return str(data[0]["id"])

    def chat(self, messages: list[dict], max_tokens: int) -> str:
        reply = self._request("/chat/completions", {"model": self.model, "messages": messages, "temperature": 0,
                                                    "max_tokens": max_tokens})
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise JudgeUnavailable(f"{self.base}/chat/completions: no choices[0].message.content in the reply") from None


def _question(sample: dict) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in sample.get("prompt") or [])


def pairwise_messages(rubric: str, sample: dict, a: str, b: str) -> list[dict]:
    ref = sample.get("reference") or ""
    user = (f"Conversation so far:\n{_question(sample)}\n\n"
            + (f"Reference answer:\n{ref}\n\n" if ref else "")
            + f"Response A:\n{a}\n\nResponse B:\n{b}\n\n"
            "Which response is better? Reply with exactly one word first: A, B or tie. Then give one short reason.")
    return [{"role": "system", "content": rubric}, {"role": "user", "content": user}]


def pointwise_messages(rubric: str, sample: dict, answer: str) -> list[dict]:
    ref = sample.get("reference") or ""
    user = (f"Conversation so far:\n{_question(sample)}\n\n" + (f"Reference answer:\n{ref}\n\n" if ref else "")
            + f"Response:\n{answer}\n\nRate the response from 1 (useless) to 10 (perfect). Reply with the number "
              "first, then one short reason.")
    return [{"role": "system", "content": rubric}, {"role": "user", "content": user}]


def parse_pairwise(text: str) -> str | None:
    """'A', 'B', 'tie' or None (the reply names no verdict)."""
    text = text or ""
    m = _PAIR_BRACKETS.search(text) or _PAIR_FIRST.match(text) or _PAIR_SENTENCE.search(text)
    if not m:
        return None
    v = m.group(1)
    return "tie" if v.lower() == "tie" else v.upper()


def parse_score(text: str) -> int | None:
    m = _SCORE.search(text or "")
    return int(m.group(1)) if m else None


def judge_run(cfg: C.RunConfig, samples: dict[str, list[dict]], out_dir: Path,
              emit: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Judge base vs fine-tuned answers; returns the summary stored in results.json."""
    st = judge_settings(cfg.eval.judge)
    if not st["url"]:
        why = ("eval.judge has no url and FTWB_JUDGE_URL is not set" if cfg.eval.judge
               else f"no judge configured (eval.judge, or {JUDGE_URL_ENV})")
        return {"skipped": f"{why}; judging skipped"}
    names = st["sets"] or [n for n in samples][:1]
    client = Client(st["url"], st["model"], st["api_key"], st["timeout_s"])
    summary: dict[str, Any] = {"mode": st["mode"], "url": client.base, "sets": names}
    try:
        if not client.model:
            client.model = client.first_model()
    except JudgeUnavailable as e:
        return {**summary, "skipped": f"judge endpoint unavailable: {e}; judging skipped"}
    summary["model"] = client.model
    rubric = st["rubric"] or DEFAULT_RUBRIC
    rng = random.Random(st["seed"])
    records: list[dict] = []
    tally = {"tuned": 0, "base": 0, "tie": 0, "unparsed": 0, "failed": 0}
    points: dict[str, list[int]] = {"base": [], "tuned": []}
    if emit:
        emit("log", message=f"judging with {client.model} at {client.base} ({st['mode']})")
    for name in names:
        for s in [x for x in samples.get(name, []) if "base" in x and "tuned" in x][: st["max_samples"]]:
            rec: dict[str, Any] = {"set": name, "index": s.get("index"), "row": s.get("row"), "mode": st["mode"]}
            try:
                if st["mode"] == "pairwise":
                    order = ["tuned", "base"] if rng.random() < 0.5 else ["base", "tuned"]
                    raw = client.chat(pairwise_messages(rubric, s, s[order[0]], s[order[1]]), st["max_tokens"])
                    verdict = parse_pairwise(raw)
                    winner = {"A": order[0], "B": order[1], "tie": "tie"}.get(verdict or "", "unparsed")
                    rec.update(order=order, raw=raw, verdict=verdict, winner=winner)
                    tally[winner] += 1
                else:
                    got = {}
                    for w in ("base", "tuned"):
                        raw = client.chat(pointwise_messages(rubric, s, s[w]), st["max_tokens"])
                        got[w] = parse_score(raw)
                        rec[f"raw_{w}"], rec[f"score_{w}"] = raw, got[w]
                        if got[w] is not None:
                            points[w].append(got[w])
                    if got["base"] is None or got["tuned"] is None:
                        winner = "unparsed"
                    else:
                        winner = "tuned" if got["tuned"] > got["base"] else "base" if got["base"] > got["tuned"] else "tie"
                    rec["winner"] = winner
                    tally[winner] += 1
            except JudgeUnavailable as e:
                rec["error"] = str(e)
                tally["failed"] += 1
            records.append(rec)
    path = out_dir / JUDGE_FILE
    C.atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    decided = tally["tuned"] + tally["base"] + tally["tie"]
    summary.update({"judged": len(records), "verdicts": tally, "path": str(path),
                    "win_rate": round((tally["tuned"] + 0.5 * tally["tie"]) / decided, 4) if decided else None})
    if st["mode"] == "pointwise":
        summary["mean"] = {w: round(sum(v) / len(v), 3) if v else None for w, v in points.items()}
    if not decided:
        summary["note"] = ("no verdict could be read from the judge's replies (see judge.jsonl)" if records
                           else "no samples with both answers to judge")
    return summary
