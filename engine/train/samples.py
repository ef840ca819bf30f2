"""Sample answers while training: a few fixed validation prompts answered greedily at
every eval, so a user sees the behaviour change, not only the loss.

The prompts are the first `eval.sample_prompts` validation examples with an assistant
turn (the split is seeded, so they are the same on every resume). Before the first step
the same prompts are answered by the base model (the adapter switched off), once per
run; the Train screen shows base, expected and current answer side by side.
"""
from __future__ import annotations

import time
from typing import Any, Callable


class SamplePrompts:
    def __init__(self, examples: list[dict], tokenizer, count: int, max_new_tokens: int):
        from engine.evaluate.generate import encode_prompt, split_prompt

        self.tok, self.max_new_tokens = tokenizer, max_new_tokens
        self.prompts: list[dict] = []   # {"prompt": last user text, "expected": reference answer}
        self.ids: list[list[int]] = []
        for ex in examples:
            if len(self.prompts) >= count:
                break
            msgs, ref = split_prompt(ex.get("messages") or [])
            if not msgs or not ref:
                continue  # completion text or no assistant turn: nothing to compare with
            try:
                ids = encode_prompt(tokenizer, msgs)
            except Exception:  # noqa: BLE001 - a template that refuses this prompt: skip it
                continue
            user = next((str(m.get("content") or "") for m in reversed(msgs) if m.get("role") == "user"), "")
            self.prompts.append({"prompt": user, "expected": ref})
            self.ids.append(ids)

    def __len__(self) -> int:
        return len(self.prompts)

    def generate(self, model, which: str = "tuned") -> tuple[list[str], float]:
        """(answers, seconds): greedy, capped at max_new_tokens, model left as it was."""
        from engine.evaluate.generate import generate_batch

        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            out = generate_batch(model, self.tok, self.ids, self.max_new_tokens, which=which)
        finally:
            if was_training:
                model.train()
        return out, time.perf_counter() - t0

    def emit_base(self, model, emit: Callable[..., Any], step: int) -> None:
        """The base model's answers (the `samples` event with base=true)."""
        if not self.prompts:
            return
        try:
            answers, dt = self.generate(model, "base" if hasattr(model, "disable_adapter") else "tuned")
        except ValueError:
            return
        emit("samples", step=step, base=True, seconds=round(dt, 3),
             samples=[{**p, "answer": a} for p, a in zip(self.prompts, answers)])

    def emit_now(self, model, emit: Callable[..., Any], step: int) -> float:
        if not self.prompts:
            return 0.0
        answers, dt = self.generate(model, "tuned")
        emit("samples", step=step, base=False, seconds=round(dt, 3),
             samples=[{**p, "answer": a} for p, a in zip(self.prompts, answers)])
        return dt
