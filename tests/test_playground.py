"""The Playground: the generation subprocess streams base and fine-tuned tokens, the
client routes them, and the screen shows them side by side."""
from __future__ import annotations

import asyncio

import pytest
from textual.app import App
from textual.widgets import Input, Static

from engine import config as C
from engine import rundir
from eval_run import trained_run
from pilot_helpers import wait_for, wait_for_screen
from tui.screens.playground import PlaygroundScreen
from tui.services.playground_client import PlaygroundClient, PlaygroundError

PROMPT = [{"role": "user", "content": "My Nova Phone 12 arrived with a cracked screen. Order #K12345."}]


class PlaygroundApp(App):
    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_mount(self) -> None:
        self.push_screen(PlaygroundScreen(self.run_dir))


async def wait_until(pred, timeout: float = 240.0, every: float = 0.1):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return True
        await asyncio.sleep(every)
    raise AssertionError("condition not met in time")


def pane_text(screen, which: str) -> str:
    return str(screen.query_one(f"#pg-text-{which}", Static).render())


async def test_client_reports_a_run_without_adapter_as_a_load_error(tmp_path):
    C.save(C.RunConfig(), tmp_path / rundir.CONFIG)
    client = PlaygroundClient(tmp_path)
    with pytest.raises(PlaygroundError, match="no trained adapter"):
        await client.start(timeout=120)
    await client.close()


async def test_screen_without_a_run_shows_the_problem_in_both_panes():
    app = PlaygroundApp(None)
    async with app.run_test() as pilot:
        await wait_for_screen(pilot, "PlaygroundScreen")
        screen = app.screen
        await wait_for(pilot, lambda: all("no run selected" in pane_text(screen, w) for w in ("base", "tuned")),
                       what="the problem in both panes")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PlaygroundScreen), what="the screen closed")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.mark.slow
async def test_client_streams_both_sides_and_done_text_matches_the_tokens(run_dir):
    client = PlaygroundClient(run_dir)
    try:
        info = await client.start(timeout=300)
        assert info["ready"] and info["device"] == "cpu"
        pieces = {"base": [], "tuned": []}
        done = {}
        async for msg in client.generate(PROMPT, which="both", temperature=0.0, max_new_tokens=24):
            assert "error" not in msg, msg
            if "token" in msg:
                pieces[msg["which"]].append(msg["token"])
            elif msg.get("done"):
                done[msg["which"]] = msg["text"]
        assert set(done) == {"base", "tuned"}
        for which in done:
            assert pieces[which] and "".join(pieces[which]) == done[which]
        # greedy streaming agrees with the batch generation used for evaluation
        from engine.evaluate.generate import encode_prompt, generate_batch, load_for_inference

        model, tok, _ = load_for_inference(run_dir, device="cpu")
        ids = encode_prompt(tok, PROMPT)
        assert generate_batch(model, tok, [ids], 24, which="tuned")[0] == done["tuned"]
        assert generate_batch(model, tok, [ids], 24, which="base")[0] == done["base"]
        # a bad request is answered, and the process keeps serving
        bad = [m async for m in client.generate([], which="both")]
        assert "error" in bad[0] and "messages" in bad[0]["error"]
        again = [m async for m in client.generate(PROMPT, which="tuned", max_new_tokens=4)]
        assert again[-1].get("done") and again[-1]["which"] == "tuned"
        # cancel stops a long generation after the token in flight
        stopped = []
        async for msg in client.generate(PROMPT, which="both", temperature=1.0, max_new_tokens=2000):
            stopped.append(msg)
            if len(stopped) == 1:
                await client.cancel()
        ends = [m for m in stopped if m.get("done")]
        assert len(ends) == 2 and all(m["cancelled"] for m in ends)
        assert len(stopped) < 100
    finally:
        await client.close()
    assert not client.running


@pytest.mark.slow
async def test_playground_screen_streams_tokens_into_both_panes(run_dir):
    app = PlaygroundApp(run_dir)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_screen(pilot, "PlaygroundScreen")
        screen = app.screen
        await wait_until(lambda: screen.ready, timeout=300)
        screen.query_one("#pg-max_new_tokens", Input).value = "16"
        screen.query_one("#pg-prompt", Input).value = PROMPT[0]["content"]
        screen.query_one("#pg-prompt", Input).focus()
        await pilot.press("enter")
        await wait_until(lambda: pane_text(screen, "base") and pane_text(screen, "tuned"), timeout=120)
        await wait_until(lambda: not screen.busy, timeout=120)
        await wait_for(pilot, lambda: "done" in str(screen.query_one("#pg-status", Static).render()), what="done")
        assert pane_text(screen, "base").strip() and pane_text(screen, "tuned").strip()
        client = screen.client
        assert client is not None
        await pilot.press("escape")
        await wait_for(pilot, lambda: not client.running, 60, "the generation process stopped")
    assert not client.running
