"""SamplesPanel: the fixed validation prompts with the expected answer, the base model's
answer from the start of the run and the latest answer of the model in training."""
from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


def _line(label: str, text: str, style: str = "") -> Text:
    t = Text(no_wrap=False)
    t.append(f"{label:>9} ", "dim")
    t.append(" ".join(text.split()) or "(empty)", style)
    return t


def samples_renderable(base: list[dict], now: list[dict], step: int | None) -> Text:
    if not base and not now:
        return Text("No sample answers yet: they appear at the first eval "
                    "(eval.sample_prompts prompts, greedy).", style="dim")
    rows = now or base
    out = []
    for i, s in enumerate(rows):
        expected = str(s.get("expected", ""))
        head = Text(f"#{i + 1} ", "bold")
        head.append(" ".join(str(s.get("prompt", "")).split()), "italic")
        if out:
            out.append(Text(""))
        out.append(head)
        out.append(_line("expected", expected, "green"))
        if i < len(base):
            out.append(_line("base", str(base[i].get("answer", ""))))
        if now and i < len(now):
            answer = str(now[i].get("answer", ""))
            match = answer.strip() == expected.strip()
            out.append(_line(f"step {step}", answer, "bold cyan" if match else "bold"))
    return Text("\n").join(out)


class SamplesPanel(VerticalScroll):
    DEFAULT_CSS = """
    SamplesPanel { height: 1fr; padding: 0 1; }
    SamplesPanel > Static { height: auto; }
    """

    text = Text("")

    def compose(self):
        yield Static(samples_renderable([], [], None), id="samples-body")

    def show(self, base: list[dict], now: list[dict], step: int | None) -> None:
        self.text = samples_renderable(base, now, step)
        self.query_one("#samples-body", Static).update(self.text)
