"""The event protocol between the engine and whoever watches it.

One JSON object per line: {"v": 1, "type": ..., "ts": <unix seconds>, ...}. Plain Python,
cheap to import, shared with the TUI. Readers ignore unknown fields and types.

Types: hello, phase, progress, metric, eval, memory, checkpoint, warning, error, done,
data (dataset statistics: rows, truncated, dropped, ...), log (a line for the
human log), eval_result (base vs fine-tuned scores at the end of a run) and samples
(step, base: bool, seconds, samples: [{prompt, expected, answer}]: greedy answers to
eval.sample_prompts fixed validation prompts, by the base model once before the first
step (base true) and by the model in training at every eval).

attention (route, probe_error, tolerance, rejected, not_tried, reason): the attention
kernel the run trains with, after its start-up check against examples run alone; each
route that failed the check first gets a warning of kind attention_fallback (route,
message). auto_fit (status: chosen | reused | off | none_fit; tokens_per_micro_batch,
grad_accum, gradient_checkpointing, tokens_per_step, requested_tokens_per_step,
trained_tokens_per_s, peak_allocated, limit, estimated_peak, measured: [one per measured
candidate], skipped, probe_s; reason when off): the micro-batch and checkpointing chosen
for the GPU (CUDA only; a warning of kind auto_fit when nothing fits).

Preference runs (train.objective dpo or orpo) add to every metric event and to every
eval event (over the validation pairs) the means over the step's pairs of:
rewards_chosen, rewards_rejected (beta * log-ratio against the reference for DPO, beta *
the per-token average log-prob for ORPO), reward_margin (chosen minus rejected),
reward_accuracy (share of pairs whose chosen reward is higher), logps_chosen and
logps_rejected (summed log-probs of the answers). Their `loss` is the objective's loss;
an eval's val_loss is the preference loss and its perplexity that of the chosen answers.
KTO runs (train.objective kto) report the same keys over rows instead of pairs: chosen =
the rows labelled good, rejected = those labelled bad, reward_accuracy = the share of rows
whose reward has the sign of their label, plus kl (the KL estimate of the step).
A warning of kind sft_on_chosen says that preference data trains SFT on chosen answers.
A warning of kind too_few_rows (message: the words `ftwb data check` uses) says the data
has fewer than 10 usable rows. The hello event's dataset_hash and data.json's content_hash
are one file's sha256, or, for several sources (or a split, mapping or row cap), a hash of
every source's hash and settings; data.json's `sources` lists each source (path, format,
mapping, split, weight, max_rows, content_hash, version, rows_total, rows_usable).

eval_result also carries sets ({set: {base, prompted?, tuned, delta}} for every eval set of
eval.sets), regressions ([{set, metric, base, tuned, change}]), judge ({mode, model,
win_rate, judged, path} or {skipped: reason}) and baseline ({key, reused, created, path}).
Each regression is also a warning of kind regression (set, metric, base, tuned, message).
A warning of kind tracker says a train.report_to tracker could not start or stopped.

Every event the engine writes carries `seq`, its line number in events.jsonl (counted
across resumes). The pipe never blocks training: it is non-blocking with a bounded buffer,
and events a stalled reader has no room for are dropped from the pipe only; a follower that
sees `seq` jump (PipeFollower) reads the rest from events.jsonl. Fault keys: a warning of
kind nan carries `what` (loss | grad_norm | val_loss | run) and `skipped: true` when the
optimizer step was skipped; checkpoint_corrupt (path) says resume passed over a damaged
checkpoint; config_changed (changes: [{field, old, new}]) lists what an edited config
changes from the resume step on. error kind disk carries path, free_bytes and
last_checkpoint; kind oom carries device (cuda | cpu) and batch_shape; kind template is a
chat template that does not render. checkpoint carries finite (all weights finite).

Several processes (torchrun; rank 0 writes every event): hello carries world_size, strategy
(single | ddp | fsdp2) and ranks ([{rank, host, device: cpu | cuda:i}]); memory carries
ranks ([{rank, host, devices: [that rank's GPU, as in devices], process_rss}], one entry on
one process); metric carries ranks_tokens_per_s (per rank) beside the global tokens_per_s.
An error of a run on several processes carries rank; when a rank other than 0 fails (or
dies), the torchrun agent writes the error (rank, host, step, exitcode, log_tail: that
rank's last lines) and the done. A warning of kind world_size_changed (old, new) says a
resume runs on a different number of processes (the data position is kept).
"""
from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

VERSION = 1

TYPES = ("hello", "phase", "progress", "metric", "eval", "memory", "checkpoint",
         "warning", "error", "done", "data", "log", "eval_result", "samples", "attention", "auto_fit")
PHASES = ("loading_model", "preparing_data", "training", "evaluating", "saving", "exporting")
DONE_STATUSES = ("completed", "stopped", "failed")
ERROR_KINDS = ("oom", "data", "config", "crash", "disk", "template")

EVENT_FD_ENV = "FTWB_EVENT_FD"
# Bytes of pipe events held back for a slow reader before further ones are dropped from
# the pipe (never from the log). Also sizes the kernel pipe where Linux allows it.
PIPE_BUFFER_ENV = "FTWB_EVENT_PIPE_BYTES"
DEFAULT_PIPE_BUFFER = 1 << 20


def make(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": type_, "ts": round(time.time(), 3), **fields}


def encode(event: dict[str, Any]) -> str:
    # allow_nan=False would raise on a NaN loss; encode non-finite numbers as strings instead.
    return json.dumps(_finite(event), separators=(",", ":"), ensure_ascii=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def decode(line: str | bytes) -> dict[str, Any] | None:
    """Parse one line; None for blank, partial or foreign lines (never raises)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or "type" not in obj:
        return None
    return obj


class EventWriter:
    """Writes each event to events.jsonl (always) and to the event pipe (while it is open).

    The pipe is non-blocking: what a stalled reader has not taken waits in a bounded
    buffer, and events beyond it are dropped from the pipe only (`dropped` counts them).
    A broken pipe (the TUI went away) is not an error: the log keeps growing and any
    later `ftwb attach` replays it. A log write that fails (a full disk) never raises:
    the partial line is cut off again, `log_error` keeps the OSError, and the pipe still
    carries the event.
    """

    def __init__(self, log_path: str | os.PathLike, pipe_fd: int | None = None,
                 buffer_bytes: int | None = None):
        self.log_path = Path(log_path)
        self._log_fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self.log_bytes = os.fstat(self._log_fd).st_size
        self.log_error: OSError | None = None
        if self.log_bytes and os.pread(self._log_fd, 1, self.log_bytes - 1) != b"\n":
            self._write_log(b"\n")  # a killed engine's half line stays a line of its own
        self.seq = count_lines(self.log_path)
        self._pipe_fd = pipe_fd
        self._pending = bytearray()
        self._limit = buffer_bytes or _env_int(PIPE_BUFFER_ENV, DEFAULT_PIPE_BUFFER)
        self.dropped = 0
        if pipe_fd is not None:
            try:
                os.set_blocking(pipe_fd, False)
                _set_pipe_size(pipe_fd, self._limit)
            except OSError:
                self._close_pipe()
        self.last: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_env(cls, log_path: str | os.PathLike) -> "EventWriter":
        fd = os.environ.get(EVENT_FD_ENV)
        return cls(log_path, int(fd) if fd and fd.isdigit() else None)

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = make(type_, seq=self.seq, **fields)
        data = (encode(event) + "\n").encode("utf-8")
        self.seq += 1  # even when the log write failed: a follower must never see a seq twice
        self._write_log(data)
        if self._pipe_fd is not None:
            self._write_pipe(data)
        self.last[type_] = event
        return event

    def _write_log(self, data: bytes) -> None:
        start = self.log_bytes
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._log_fd, view):]
        except OSError as e:
            self.log_error = e
            try:  # never leave half a line: the next event would be glued to it
                os.ftruncate(self._log_fd, start)
            except OSError:
                pass
            return
        self.log_bytes = start + len(data)

    def _write_pipe(self, data: bytes) -> None:
        if len(self._pending) + len(data) > self._limit:
            self.dropped += 1  # the reader is stalled; it re-reads this one from the log
        else:
            self._pending += data
        self._flush_pipe()

    def _flush_pipe(self) -> bool:
        """Write what the pipe takes now; True when nothing is left pending."""
        try:
            while self._pending:
                n = os.write(self._pipe_fd, self._pending)
                del self._pending[:n]
        except BlockingIOError:
            return False
        except OSError:  # EPIPE: the reader went away; the pipe is over for good
            self._close_pipe()
        return True

    def _close_pipe(self) -> None:
        fd, self._pipe_fd = self._pipe_fd, None
        self._pending.clear()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self, linger_s: float = 2.0) -> None:
        """Give a live reader a moment to take the last events (the `done`), then close."""
        import select

        end = time.monotonic() + linger_s
        while self._pipe_fd is not None and self._pending and time.monotonic() < end:
            try:
                select.select([], [self._pipe_fd], [], max(0.0, end - time.monotonic()))
            except (OSError, ValueError):
                break
            self._flush_pipe()
        self._close_pipe()
        try:
            os.close(self._log_fd)
        except OSError:
            pass


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "")
    return int(v) if v.isdigit() and int(v) > 0 else default


def _set_pipe_size(fd: int, size: int) -> None:
    import fcntl

    setsz = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    try:
        fcntl.fcntl(fd, setsz, max(4096, min(size, 1 << 20)))
    except OSError:
        pass  # not a pipe, or above the system limit: the default size is fine


def count_lines(path: str | os.PathLike) -> int:
    """Lines in a file (0 if missing), read in blocks: fast even for a huge log."""
    n = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                n += block.count(b"\n")
    except FileNotFoundError:
        pass
    return n


def read_all(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every parseable event in an events.jsonl file."""
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                ev = decode(line)
                if ev is not None:
                    out.append(ev)
    except FileNotFoundError:
        pass
    return out


class LogFollower:
    """Incrementally reads complete lines appended to events.jsonl (for attach / replay).

    `poll()` returns the events written since the last call; a partial last line is kept
    until its newline arrives.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._pos = 0
        self._buf = b""

    def poll(self, max_bytes: int = 64 * 1024 * 1024) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self._pos += len(chunk)
        data = self._buf + chunk
        lines = data.split(b"\n")
        self._buf = lines.pop()
        events = []
        for line in lines:
            ev = decode(line)
            if ev is not None:
                events.append(ev)
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.poll()

    def drain(self, chunk_bytes: int = 64 * 1024 * 1024) -> list[dict[str, Any]]:
        """Every complete event appended since the last call, however much that is."""
        out: list[dict[str, Any]] = []
        while True:
            pos = self._pos
            out.extend(self.poll(max_bytes=chunk_bytes))
            if self._pos == pos:
                return out


class PipeFollower:
    """The events of one engine, in order and complete, read off its pipe.

    Feed it the raw chunks read from the pipe. When `seq` jumps (the engine dropped
    events while this reader was stalled) the reader switches to events.jsonl for good,
    from `log_offset` (the log's size when this engine started): the engine writes the
    log before the pipe, so the pipe is then only a wake-up call. `finish()`, after the
    pipe closed, returns whatever the log holds beyond the last event seen.
    """

    def __init__(self, log_path: str | os.PathLike, log_offset: int = 0):
        self._log = LogFollower(log_path)
        self._log._pos = log_offset
        self._buf = b""
        self.last_seq: int | None = None
        self.resyncs = 0

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        if self.resyncs:
            return self._from_log()
        lines = (self._buf + chunk).split(b"\n")
        self._buf = lines.pop()
        out: list[dict[str, Any]] = []
        for line in lines:
            e = decode(line)
            if e is None:
                continue
            seq = e.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                if self.last_seq is not None and seq > self.last_seq + 1:
                    self.resyncs += 1
                    return out + self._from_log()
                self.last_seq = seq
            out.append(e)
        return out

    def _from_log(self) -> list[dict[str, Any]]:
        out = []
        for e in self._log.drain():
            seq = e.get("seq")
            if isinstance(seq, int) and self.last_seq is not None and seq <= self.last_seq:
                continue
            out.append(e)
            if isinstance(seq, int):
                self.last_seq = seq
        return out

    def finish(self) -> list[dict[str, Any]]:
        return self._from_log()
