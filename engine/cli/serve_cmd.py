"""`ftwb serve --openai TARGET`: an OpenAI-compatible endpoint for a run or a model.

Prints one line `serving http://HOST:PORT/v1 models: a, b` on stdout once it listens (port
0 picks a free one), then serves until Ctrl+C. Exit 2 on bad input, 1 when loading fails.
"""
from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a run or a model over an OpenAI-compatible HTTP API",
                       description="Serve TARGET (a run directory: the fine-tuned model and `base`; or a model: "
                                   "demo, a local directory, a hub id) at /v1/chat/completions and /v1/models, "
                                   "for any OpenAI client or as the LLM judge of `eval.judge`.")
    p.add_argument("target", help="run directory or model")
    p.add_argument("--openai", action="store_true", required=True,
                   help="speak the OpenAI chat-completions API (the only protocol served)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; no authentication)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.set_defaults(func=run)


def _err(msg: str, code: int = 2) -> int:
    print(f"ftwb serve: {msg}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not 0 <= args.port <= 65535:
        return _err(f"--port {args.port} is out of range; use 0-65535")
    target = args.target
    p = Path(target).expanduser()
    if p.is_dir() and not (p / "config.yaml").exists() and not (p / "config.json").exists():
        return _err(f"{p} is neither a run directory (config.yaml) nor a model directory (config.json)")

    def ready(url: str, names: list[str]) -> None:
        print(f"serving {url} models: {', '.join(names)}", flush=True)

    from engine.evaluate.generate import RunNotReady
    from engine.train.model import ModelError

    try:
        from engine.serve_openai import serve

        return serve(target, host=args.host, port=args.port, device=args.device, ready=ready)
    except (RunNotReady, ModelError) as e:
        return _err(str(e))
    except OSError as e:
        return _err(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        return _err(f"cannot serve {target}: {type(e).__name__}: {e}", 1)
