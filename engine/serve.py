"""The playground's generation process: `python -m engine.serve RUN_DIR`.

Protocol, JSON lines. Requests on stdin:
  {"id": ..., "messages": [{"role", "content"}, ...], "which": "base"|"tuned"|"both",
   "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256, "seed": optional int}
  {"cancel": id}            stop that request after the current token
Replies on stdout:
  {"ready": true, "model": ..., "device": ..., "sides": [...]}    once the model is loaded
  {"id", "which", "token": "..."}                                  as text streams
  {"id", "which", "done": true, "text": "...", "tokens": n, "cancelled": bool}
  {"error": msg, "id"?: ..., "fatal"?: true}                       fatal: the process exits
With "both", base and fine-tuned advance one token each in turn, so both panes fill together.
Library output is moved to stderr so nothing but the protocol reaches stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any, TextIO

SIDES = ("base", "tuned")
MAX_NEW_TOKENS_LIMIT = 8192


class BadRequest(ValueError):
    pass


def parse_request(obj: Any) -> dict[str, Any]:
    """Validate one request; BadRequest names the field and what is allowed."""
    if not isinstance(obj, dict):
        raise BadRequest("a request must be a JSON object")
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: expected a non-empty list of {role, content}")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadRequest(f"messages[{i}]: expected {{\"role\": str, \"content\": str}}")
    which = obj.get("which", "both")
    if which not in ("base", "tuned", "both"):
        raise BadRequest(f"which: {which!r} is not allowed; expected 'base', 'tuned' or 'both'")
    try:
        temperature = float(obj.get("temperature", 0.0))
        top_p = float(obj.get("top_p", 1.0))
        max_new = int(obj.get("max_new_tokens", 256))
    except (TypeError, ValueError):
        raise BadRequest("temperature and top_p must be numbers, max_new_tokens an integer") from None
    if not 0.0 <= temperature <= 5.0:
        raise BadRequest(f"temperature: {temperature} is out of range; it must be between 0 and 5")
    if not 0.0 < top_p <= 1.0:
        raise BadRequest(f"top_p: {top_p} is out of range; it must be greater than 0 and at most 1")
    if not 1 <= max_new <= MAX_NEW_TOKENS_LIMIT:
        raise BadRequest(f"max_new_tokens: {max_new} is out of range; it must be between 1 and {MAX_NEW_TOKENS_LIMIT}")
    seed = obj.get("seed")
    return {"id": obj.get("id"), "messages": msgs, "which": which, "temperature": temperature, "top_p": top_p,
            "max_new_tokens": max_new, "seed": int(seed) if isinstance(seed, int) else None}


class Server:
    def __init__(self, model, tok, out: TextIO):
        self.model, self.tok, self.out = model, tok, out
        self.inbox: queue.Queue = queue.Queue()
        self.pending: deque = deque()
        self.cancelled: set = set()

    def send(self, obj: dict) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()

    def read_stdin(self, stream: TextIO) -> None:
        for line in stream:
            if line.strip():
                self.inbox.put(line)
        self.inbox.put(None)  # EOF: the client went away

    def _drain(self) -> None:
        """Take messages that arrived during generation: cancels act now, requests wait."""
        while True:
            try:
                line = self.inbox.get_nowait()
            except queue.Empty:
                return
            obj = _loads(line) if line is not None else None
            if isinstance(obj, dict) and "cancel" in obj:
                self.cancelled.add(obj["cancel"])
            else:
                self.pending.append(line)

    def next_line(self):
        return self.pending.popleft() if self.pending else self.inbox.get()

    def serve(self) -> int:
        while True:
            line = self.next_line()
            if line is None:
                return 0
            obj = _loads(line)
            if obj is None:
                self.send({"error": "not valid JSON; send one JSON object per line"})
                continue
            if "cancel" in obj:
                continue  # nothing running to cancel
            try:
                req = parse_request(obj)
            except BadRequest as e:
                self.send({"error": str(e), "id": obj.get("id") if isinstance(obj, dict) else None})
                continue
            try:
                self.generate(req)
            except Exception as e:  # noqa: BLE001 - report, keep serving
                print(f"generation failed: {type(e).__name__}: {e}", file=sys.stderr)
                self.send({"error": f"generation failed: {type(e).__name__}: {e}", "id": req["id"]})

    def generate(self, req: dict) -> None:
        from engine.evaluate.generate import encode_prompt, stream_tokens

        rid = req["id"]
        prompt = encode_prompt(self.tok, req["messages"])
        sides = SIDES if req["which"] == "both" else (req["which"],)
        streams = {w: stream_tokens(self.model, self.tok, prompt, w, temperature=req["temperature"],
                                    top_p=req["top_p"], max_new_tokens=req["max_new_tokens"], seed=req["seed"])
                   for w in sides}
        texts = {w: [] for w in sides}
        live = list(sides)
        while live:
            for w in list(live):
                self._drain()
                if rid in self.cancelled:
                    live = []
                    break
                try:
                    piece = next(streams[w])
                except StopIteration:
                    live.remove(w)
                    continue
                texts[w].append(piece)
                self.send({"id": rid, "which": w, "token": piece})
        cancelled = rid in self.cancelled
        self.cancelled.discard(rid)
        for w in sides:
            self.send({"id": rid, "which": w, "done": True, "text": "".join(texts[w]),
                       "pieces": len(texts[w]), "cancelled": cancelled})


def _loads(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None


def _protocol_stdout() -> TextIO:
    """A private handle on the real stdout; fd 1 and sys.stdout then point at stderr."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.serve", description="stream generations from a run")
    p.add_argument("run_dir")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    args = p.parse_args(argv)
    out = _protocol_stdout()

    def fatal(msg: str) -> int:
        out.write(json.dumps({"error": msg, "fatal": True}) + "\n")
        out.flush()
        return 2

    try:
        from engine.evaluate.generate import RunNotReady, check_run_dir, load_for_inference

        cfg = check_run_dir(Path(args.run_dir))
        model, tok, cfg = load_for_inference(Path(args.run_dir), cfg, device=args.device)
    except RunNotReady as e:
        return fatal(str(e))
    except Exception as e:  # noqa: BLE001 - the pane shows this line
        import traceback

        traceback.print_exc()
        return fatal(f"cannot load the model: {type(e).__name__}: {e}")
    from engine.evaluate.generate import model_device

    server = Server(model, tok, out)
    threading.Thread(target=server.read_stdin, args=(sys.stdin,), daemon=True).start()
    server.send({"ready": True, "model": cfg.model.name_or_path, "method": cfg.method,
                 "device": str(model_device(model)), "sides": list(SIDES), "run_dir": str(args.run_dir)})
    return server.serve()


if __name__ == "__main__":
    sys.exit(main())
