"""The Playground: one prompt, base and fine-tuned answers streaming side by side.

The model runs in `python -m engine.serve RUN_DIR` (started by PlaygroundClient), never
in the TUI process. Tokens are buffered and the panes redrawn on a short timer, so a fast
model cannot flood the screen with repaints.
"""
from __future__ import annotations

import json
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Static

from engine import rundir
from tui.services.playground_client import PlaygroundClient, PlaygroundError

SIDES = (("base", "base model"), ("tuned", "fine-tuned"))
REDRAW_S = 0.05
SETTINGS = (("temperature", "temperature", "0.0"), ("top_p", "top-p", "1.0"), ("max_new_tokens", "max new tokens", "256"))


def parse_settings(values: dict[str, str]) -> tuple[dict, str | None]:
    """(settings, problem): the generation settings from the inputs, or a one-line problem."""
    try:
        t = float(values["temperature"])
        p = float(values["top_p"])
        n = int(values["max_new_tokens"])
    except ValueError:
        return {}, "temperature and top-p must be numbers, max new tokens a whole number"
    if not 0 <= t <= 5:
        return {}, f"temperature {t:g} is out of range: use 0 (greedy) to 5"
    if not 0 < p <= 1:
        return {}, f"top-p {p:g} is out of range: use a value above 0 and at most 1"
    if not 1 <= n <= 8192:
        return {}, f"max new tokens {n} is out of range: use 1 to 8192"
    return {"temperature": t, "top_p": p, "max_new_tokens": n}, None


def first_system_prompt(run_dir: Path | None) -> str:
    """The system prompt of the run's first evaluated sample, so the demo answers in its trained format."""
    if run_dir is None:
        return ""
    try:
        with open(run_dir / rundir.EVAL / "samples.jsonl", encoding="utf-8") as f:
            first = json.loads(f.readline())
        return next((m["content"] for m in first.get("prompt", []) if m.get("role") == "system"), "")
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return ""


class PlaygroundScreen(Screen):
    DEFAULT_CSS = """
    PlaygroundScreen #pg-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    PlaygroundScreen #pg-panes { height: 1fr; }
    PlaygroundScreen .pg-pane { width: 1fr; border: round $primary; padding: 0 1; }
    PlaygroundScreen .pg-pane.error { border: round $error; }
    PlaygroundScreen #pg-settings { height: 3; }
    PlaygroundScreen #pg-settings Label { padding: 1 1 0 1; }
    PlaygroundScreen #pg-settings Input { width: 12; }
    PlaygroundScreen #pg-system, PlaygroundScreen #pg-prompt { height: 3; }
    PlaygroundScreen #pg-status { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("ctrl+enter,ctrl+j", "send", "Send", priority=True, tooltip="Send the prompt to both models"),
        Binding("ctrl+g", "stop", "Stop", priority=True, tooltip="Stop the generation in progress"),
        Binding("ctrl+l", "clear", "Clear", tooltip="Clear both panes"),
        Binding("escape", "back", "Back", tooltip="Close the playground (stops its model process)"),
    ]

    def __init__(self, run_dir: Path | None, **kw):
        super().__init__(**kw)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.client: PlaygroundClient | None = None
        self.ready = False
        self.busy = False
        self.texts = {w: "" for w, _ in SIDES}
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield Static(self._title("starting"), id="pg-title")
        with Horizontal(id="pg-panes"):
            for which, label in SIDES:
                with VerticalScroll(id=f"pg-pane-{which}", classes="pg-pane") as pane:
                    pane.border_title = label
                    yield Static("", id=f"pg-text-{which}", markup=False)
        with Horizontal(id="pg-settings"):
            for key, label, default in SETTINGS:
                yield Label(label)
                yield Input(default, id=f"pg-{key}", restrict=r"[0-9.]*")
        yield Input(first_system_prompt(self.run_dir), placeholder="system prompt (optional)", id="pg-system")
        yield Input(placeholder="prompt: type and press enter", id="pg-prompt")
        yield Static("", id="pg-status")
        yield Footer()

    def _title(self, state: str) -> str:
        name = self.run_dir.name if self.run_dir else "no run"
        return f"Playground · {name} · {state}"

    def on_mount(self) -> None:
        self.set_interval(REDRAW_S, self._redraw)
        self.query_one("#pg-prompt", Input).focus()
        problem = self._run_problem()
        if problem:
            self._fail(problem)
            return
        self._status("loading the model in a separate process…")
        self._start()

    def _run_problem(self) -> str | None:
        if self.run_dir is None:
            return "no run selected: open a finished run on the Runs screen, then the playground"
        from engine.evaluate.generate import RunNotReady, check_run_dir

        try:
            check_run_dir(self.run_dir)
        except RunNotReady as e:
            return str(e)
        return None

    # ------------------------------------------------------------ process
    @work(exclusive=True, group="playground-start", exit_on_error=False)
    async def _start(self) -> None:
        self.client = PlaygroundClient(self.run_dir)
        try:
            info = await self.client.start()
        except PlaygroundError as e:
            self._fail(f"the model could not be loaded: {e}")
            return
        self.ready = True
        self.query_one("#pg-title", Static).update(self._title(f"ready on {info.get('device', '?')}"))
        self._status("ready: type a prompt and press enter (ctrl+g stops, esc goes back)")

    def _fail(self, message: str) -> None:
        self.ready = False
        self.query_one("#pg-title", Static).update(self._title("error"))
        for which, _ in SIDES:
            self.texts[which] = message
            self.query_one(f"#pg-pane-{which}").add_class("error")
        self._dirty = True
        self._status(message)

    def _status(self, text: str) -> None:
        self.query_one("#pg-status", Static).update(text)

    async def on_unmount(self) -> None:
        if self.client is not None:
            await self.client.close()

    # ------------------------------------------------------------ actions
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_send()

    def action_send(self) -> None:
        prompt = self.query_one("#pg-prompt", Input).value.strip()
        if not self.ready:
            self._status("the model is not ready yet" if self.client else "no model to send to")
            return
        if self.busy:
            self._status("still generating: ctrl+g stops it")
            return
        if not prompt:
            self._status("type a prompt first")
            return
        values = {k: self.query_one(f"#pg-{k}", Input).value for k, _, _ in SETTINGS}
        settings, problem = parse_settings(values)
        if problem:
            self._status(problem)
            return
        system = self.query_one("#pg-system", Input).value.strip()
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        for which, _ in SIDES:
            self.texts[which] = ""
            self.query_one(f"#pg-pane-{which}").remove_class("error")
        self._dirty = True
        self._generate(messages, settings)

    @work(exclusive=True, group="playground-generate", exit_on_error=False)
    async def _generate(self, messages: list[dict], settings: dict) -> None:
        assert self.client is not None
        self.busy = True
        self._status("generating…")
        counts = {w: 0 for w, _ in SIDES}
        try:
            async for msg in self.client.generate(messages, which="both", **settings):
                which = msg.get("which")
                if "error" in msg:
                    if msg.get("fatal"):
                        self._fail(msg["error"])
                    else:
                        self._status(f"error: {msg['error']}")
                    return
                if "token" in msg and which in self.texts:
                    self.texts[which] += msg["token"]
                    counts[which] += 1
                    self._dirty = True
                elif msg.get("done") and which in self.texts:
                    self.texts[which] = msg.get("text", self.texts[which])
                    self._dirty = True
            self._status("done" + (" (stopped)" if counts and self._stopped else "") +
                         f": {counts['base']} / {counts['tuned']} pieces")
        except PlaygroundError as e:
            self._fail(str(e))
        finally:
            self.busy = False
            self._stopped = False

    _stopped = False

    async def action_stop(self) -> None:
        if self.busy and self.client is not None:
            self._stopped = True
            try:
                await self.client.cancel()
            except PlaygroundError as e:
                self._fail(str(e))

    def action_clear(self) -> None:
        if self.ready:
            for which, _ in SIDES:
                self.texts[which] = ""
            self._dirty = True

    async def action_back(self) -> None:
        await self.action_stop()
        self.app.pop_screen()

    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for which, _ in SIDES:
            self.query_one(f"#pg-text-{which}", Static).update(self.texts[which])
            self.query_one(f"#pg-pane-{which}", VerticalScroll).scroll_end(animate=False)
