"""An OpenAI-compatible HTTP front for ftwb's generation: `ftwb serve --openai TARGET`.

TARGET is a run directory (two models: the fine-tuned one, named after the run, and
`base`) or a model (`demo`, a local directory, a hub id: one model, named `base`). Serves
`GET /v1/models` and `POST /v1/chat/completions` (with `stream: true` as server-sent
events), so any OpenAI client, or ftwb's own LLM judge, can talk to it. Standard library
HTTP server; one generation at a time (one model in memory), other requests wait.
Binds to 127.0.0.1 unless told otherwise: there is no authentication.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_TOKENS_LIMIT = 8192
MAX_BODY = 8 * 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": "invalid_request_error" if self.status < 500
                          else "server_error", "param": self.param, "code": self.code}}


class Backend:
    """The loaded model and the names it answers to: {model id: side}."""

    def __init__(self, model, tok, names: dict[str, str]):
        self.model, self.tok, self.names = model, tok, names
        self.lock = threading.Lock()
        self.created = int(time.time())

    def side_of(self, name: Any) -> tuple[str, str]:
        if name is None:
            name = next(iter(self.names))
        if not isinstance(name, str) or name not in self.names:
            raise ApiError(404, f"model {name!r} not found; this server has {', '.join(self.names)}",
                           "model", "model_not_found")
        return name, self.names[name]


def parse_chat_request(body: Any) -> dict[str, Any]:
    """Validate a chat-completions body; ApiError(400) names the parameter."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "messages: expected a non-empty list of {role, content}", "messages")
    clean = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}]: expected {{role, content}}", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: the text ones, joined
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content: expected text", "messages")
        clean.append({"role": m["role"], "content": content})

    def num(key: str, default: float, lo: float, hi: float, kind=float):
        v = body.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise ApiError(400, f"{key}: expected a number", key)
        if not lo <= v <= hi:
            raise ApiError(400, f"{key}: {v} is out of range [{lo}, {hi}]", key)
        return kind(v)

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    body = {**body, "max_tokens": max_tokens}
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, "n: only 1 is supported", "n")
    seed = body.get("seed")
    return {"model": body.get("model"), "messages": clean,
            "temperature": num("temperature", 1.0, 0.0, 2.0), "top_p": num("top_p", 1.0, 0.0, 1.0),
            "max_tokens": num("max_tokens", 256, 1, MAX_TOKENS_LIMIT, int),
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            "stream": bool(body.get("stream", False))}


def make_handler(backend: Backend):
    from engine.evaluate.generate import encode_prompt, stream_tokens

    class Handler(BaseHTTPRequestHandler):
        server_version = "ftwb-openai/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: one line per request on stderr
            import sys

            print(f"{self.address_string()} {fmt % args}", file=sys.stderr)

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": n, "object": "model", "created": backend.created, "owned_by": "ftwb"}
                    for n in backend.names]})
            elif self.path.rstrip("/") in ("", "/health"):
                self._send(200, {"status": "ok"})
            else:
                self._send(404, ApiError(404, f"no route {self.path}").body())

        def do_POST(self):  # noqa: N802
            try:
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    raise ApiError(404, f"no route {self.path}; use /v1/chat/completions")
                size = int(self.headers.get("Content-Length") or 0)
                if size > MAX_BODY:
                    raise ApiError(413, "request body too large")
                try:
                    body = json.loads(self.rfile.read(size) or b"null")
                except ValueError:
                    raise ApiError(400, "the request body is not valid JSON") from None
                req = parse_chat_request(body)
                name, side = backend.side_of(req["model"])
                self._complete(req, name, side)
            except ApiError as e:
                self._send(e.status, e.body())
            except Exception as e:  # noqa: BLE001 - a server error, the server keeps serving
                self._send(500, ApiError(500, f"generation failed: {type(e).__name__}: {e}").body())

        def _complete(self, req: dict, name: str, side: str) -> None:
            cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            stats: dict = {}
            with backend.lock:
                prompt = encode_prompt(backend.tok, req["messages"])
                pieces = stream_tokens(backend.model, backend.tok, prompt, side, temperature=req["temperature"],
                                       top_p=req["top_p"], max_new_tokens=req["max_tokens"], seed=req["seed"],
                                       stats=stats)
                if req["stream"]:
                    self._stream(cid, created, name, pieces, stats)
                    return
                text = "".join(pieces)
            usage = {"prompt_tokens": len(prompt), "completion_tokens": stats.get("tokens", 0),
                     "total_tokens": len(prompt) + stats.get("tokens", 0)}
            self._send(200, {"id": cid, "object": "chat.completion", "created": created, "model": name,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": stats.get("finish", "stop")}],
                             "usage": usage})

        def _stream(self, cid: str, created: int, name: str, pieces, stats: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

            def chunk(delta: dict, finish: str | None) -> None:
                obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode("utf-8"))
                self.wfile.flush()

            chunk({"role": "assistant", "content": ""}, None)
            for piece in pieces:
                chunk({"content": piece}, None)
            chunk({}, stats.get("finish", "stop"))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


def load_backend(target: str, device: str | None = None) -> Backend:
    """A run directory (fine-tuned + base) or a model (base only), loaded for generation."""
    from engine import config as C
    from engine import rundir

    p = Path(target).expanduser()
    if p.is_dir() and (p / rundir.CONFIG).exists():
        from engine.evaluate.generate import check_run_dir, load_for_inference

        cfg = check_run_dir(p)
        model, tok, _ = load_for_inference(p, cfg, device=device)
        return Backend(model, tok, {p.resolve().name: "tuned", "base": "base"})
    from engine.data.template import ensure_chat_template
    from engine.evaluate.generate import load_base
    from engine.train.model import load_tokenizer, resolve_model_path

    cfg = C.RunConfig()
    cfg.model.name_or_path = str(p.resolve()) if p.exists() else target
    tok = load_tokenizer(cfg, resolve_model_path(cfg.model.name_or_path))
    ensure_chat_template(tok, None)
    model, _, _ = load_base(cfg, device)
    return Backend(model, tok, {"base": "tuned"})  # a plain model: its own side is "as is"


def serve(target: str, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
          ready=None) -> int:
    """Load TARGET and serve until interrupted; `ready(url, names)` is called once listening."""
    backend = load_backend(target, device)
    httpd = ThreadingHTTPServer((host, port), make_handler(backend))
    httpd.daemon_threads = True
    url = f"http://{host}:{httpd.server_address[1]}/v1"
    if ready:
        ready(url, list(backend.names))
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
