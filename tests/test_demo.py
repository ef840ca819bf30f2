"""The offline demo: sample data, its messy copy, the demo config and the tiny local model."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

from engine import demo
from engine.config import RunConfig, load

REPO = Path(__file__).resolve().parent.parent
FIELDS = {"category", "priority", "product", "order_id", "sentiment", "needs_human"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- sample data

def test_sample_data_has_400_valid_chat_rows_with_json_answers():
    rows = _rows(demo.demo_dataset_path())
    assert len(rows) >= 400
    for i, row in enumerate(rows):
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system", "user", "assistant"], i
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in row["messages"]), i
        answer = json.loads(row["messages"][2]["content"])
        assert set(answer) == FIELDS, i
        assert answer["priority"] in {"low", "medium", "high", "urgent"}
        assert answer["sentiment"] in {"positive", "neutral", "negative"}
        assert isinstance(answer["needs_human"], bool)


def test_sample_tickets_are_all_different():
    users = [r["messages"][1]["content"] for r in _rows(demo.demo_dataset_path())]
    assert len(set(users)) == len(users)


def test_sample_answers_carry_cues_from_the_ticket_text():
    # Learnable: an order id in the answer is in the text, a product is named in the text,
    # and urgent tickets always need a human.
    for row in _rows(demo.demo_dataset_path()):
        text, answer = row["messages"][1]["content"], json.loads(row["messages"][2]["content"])
        if answer["order_id"]:
            assert answer["order_id"] in text
        else:
            assert not re.search(r"#[A-Z]\d{5}", text)
        if answer["product"]:
            assert answer["product"] in text
        if answer["priority"] == "urgent":
            assert answer["needs_human"] is True


def test_generator_is_deterministic_and_matches_committed_files(tmp_path):
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import make_tickets; "
                    "from pathlib import Path; make_tickets.main(Path(sys.argv[2]))",
                    str(demo.SAMPLE_DATA_DIR), str(tmp_path)], check=True, capture_output=True)
    for name in ("tickets.jsonl", "tickets_messy.jsonl", "MESSY.md"):
        assert (tmp_path / name).read_bytes() == (demo.SAMPLE_DATA_DIR / name).read_bytes(), name


# ---------------------------------------------------------------- the messy copy

def _messy_table() -> list[tuple[int, str, str]]:
    text = (demo.SAMPLE_DATA_DIR / "MESSY.md").read_text(encoding="utf-8")
    return [(int(m[1]), m[2], m[3]) for m in re.finditer(r"^\| (\d+) \| `(\w+)` \| (.*) \|$", text, re.M)]


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _texts(row: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in row["messages"])


def _ref_line(detail: str) -> int:
    return int(re.search(r"line (\d+)", detail)[1])


def _check_defect(defect: str, detail: str, raw: bytes, lines: list[bytes]) -> None:
    line = raw.rstrip(b"\r\n").decode("utf-8")
    if defect == "invalid_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
        return
    if defect == "crlf":
        assert raw.endswith(b"\r\n")
        return
    row = json.loads(line)
    msgs = row["messages"]
    roles = [m.get("role") for m in msgs]
    text = _texts(row)
    if defect == "exact_duplicate":
        assert raw.rstrip(b"\r\n") == lines[_ref_line(detail) - 1].rstrip(b"\r\n")
    elif defect == "near_duplicate":
        other = json.loads(lines[_ref_line(detail) - 1])["messages"][1]["content"].split(" ")
        mine = msgs[1]["content"].split(" ")
        assert len(mine) == len(other) and sum(a != b for a, b in zip(mine, other)) == 1
    elif defect == "empty_assistant":
        assert [m["content"] for m in msgs if m["role"] == "assistant"] == [""]
    elif defect == "no_assistant":
        assert "assistant" not in roles
    elif defect == "missing_content":
        assert any("content" not in m for m in msgs)
    elif defect == "unknown_role":
        assert "bot" in roles
    elif defect == "system_not_first":
        assert "system" in roles and roles[0] != "system"
    elif defect == "last_turn_user":
        assert roles[-1] == "user" and "assistant" in roles
    elif defect == "non_string_content":
        assert any(isinstance(m.get("content"), (int, float)) for m in msgs)
    elif defect == "mojibake":
        assert "cafÃ©" in text
    elif defect == "replacement_char":
        assert "\ufffd" in text
    elif defect == "control_char":
        assert any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in text)
    elif defect == "pii_email":
        assert re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text)
    elif defect == "pii_phone":
        assert re.search(r"(\+\d{1,3} )?\d{3,4} \d{3,4} \d{4}", text)
    elif defect == "pii_card":
        card = re.search(r"\b(?:\d{4} ){3}\d{4}\b", text)[0].replace(" ", "")
        assert _luhn_ok(card)
    elif defect == "pii_iban":
        assert _iban_ok(re.search(r"\bGB\d{2}[A-Z]{4}\d{14}\b", text)[0])
    elif defect == "pii_ip":
        assert "8.8.8.8" in text
    elif defect == "secret_aws_key":
        assert re.search(r"\bAKIA[0-9A-Z]{16}\b", text)
    elif defect == "secret_private_key":
        assert "-----BEGIN RSA PRIVATE KEY-----" in text
    elif defect == "secret_github_token":
        assert re.search(r"\bghp_[A-Za-z0-9]{36}\b", text)
    elif defect == "special_token":
        assert "<|im_end|>" in text
    elif defect == "overlong":
        assert len(text) > 12000
    else:
        pytest.fail(f"MESSY.md lists an unknown defect {defect!r}")


def test_messy_copy_has_each_listed_defect_at_its_line():
    raw_lines = (demo.SAMPLE_DATA_DIR / "tickets_messy.jsonl").read_bytes().splitlines(keepends=True)
    assert 400 <= len(raw_lines) <= 440
    table = _messy_table()
    kinds = {d for _, d, _ in table}
    assert {"exact_duplicate", "near_duplicate", "invalid_json", "empty_assistant", "no_assistant",
            "missing_content", "unknown_role", "system_not_first", "last_turn_user", "non_string_content",
            "mojibake", "replacement_char", "control_char", "pii_email", "pii_phone", "pii_card", "pii_iban",
            "pii_ip", "secret_aws_key", "secret_private_key", "secret_github_token", "special_token",
            "overlong", "crlf"} <= kinds
    for line_no, defect, detail in table:
        _check_defect(defect, detail, raw_lines[line_no - 1], raw_lines)


def test_messy_lines_not_listed_are_clean_rows():
    raw_lines = (demo.SAMPLE_DATA_DIR / "tickets_messy.jsonl").read_bytes().splitlines(keepends=True)
    listed = {n for n, _, _ in _messy_table()}
    # Rows that others duplicate are themselves clean; only the copies are listed.
    for i, raw in enumerate(raw_lines, start=1):
        if i in listed:
            continue
        assert raw.endswith(b"\n") and not raw.endswith(b"\r\n"), i
        row = json.loads(raw)
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"], i
        assert set(json.loads(row["messages"][2]["content"])) == FIELDS, i


# ---------------------------------------------------------------- demo config

def test_demo_yaml_validates_and_points_at_the_demo():
    cfg = load(demo.demo_config_path())
    assert isinstance(cfg, RunConfig)
    assert cfg.model.name_or_path == "demo" and cfg.data.path == "demo" and cfg.method == "lora"
    assert cfg.data.packing and not cfg.train.gradient_checkpointing
    assert demo.demo_config() == cfg


def test_demo_paths_resolve_to_bundled_files():
    assert demo.resolve_data_path("demo") == str(demo.demo_dataset_path())
    assert demo.resolve_data_path("x.jsonl") == "x.jsonl"
    assert demo.resolve_model_path("/some/model") == "/some/model"
    assert demo.demo_config_path().exists() and demo.demo_messy_dataset_path().exists()


def test_importing_demo_module_stays_light():
    code = ("import sys, engine.demo; heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'peft') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- demo model

@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    # The default cache (or $FTWB_CACHE_DIR): built once per recipe, shared with other tests.
    return demo.ensure_demo_model()


def test_demo_model_second_call_is_a_cache_hit(demo_model_dir):
    assert (demo_model_dir / "demo_build.json").exists()
    assert demo_model_dir.name == f"demo-model-{demo.recipe_hash()}"
    built = (demo_model_dir / "demo_build.json").stat().st_mtime_ns
    t0 = time.monotonic()
    assert demo.ensure_demo_model() == demo_model_dir
    assert (demo_model_dir / "demo_build.json").stat().st_mtime_ns == built  # not rebuilt
    assert time.monotonic() - t0 < 5.0  # a rebuild takes far longer


def test_demo_tokenizer_round_trips_and_renders_chat(demo_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    for text in ["Hi, my order #A12345 never came.\n\tThanks!", "cafÃ© \ufffd ünïcödé 4111 😀"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|pad|>" and tok.bos_token == "<|begin_of_text|>"
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": "A"}], tokenize=False)
    assert full.endswith("<|im_start|>assistant\nA<|im_end|>\n")


def test_demo_model_loads_and_gives_finite_logits(demo_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir)
    assert model.config.model_type == "llama" and not model.config.tie_word_embeddings
    assert (demo_model_dir / "model.safetensors").exists()
    row = _rows(demo.demo_dataset_path())[0]
    enc = tok.apply_chat_template(row["messages"], return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()


def test_demo_base_model_has_not_learned_the_answers(demo_model_dir):
    # Pre-training saw ticket texts and answer-shaped JSON but never a ticket next to its
    # answer: the base finds a ticket's true answer hardly likelier than another ticket's.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir)
    rows = [r["messages"] for r in _rows(demo.demo_dataset_path())[:24]]

    def answer_loss(prompt_msgs, answer):
        prompt = tok.apply_chat_template(prompt_msgs, add_generation_prompt=True, return_dict=False)
        full = tok.apply_chat_template(prompt_msgs + [answer], return_dict=False)
        labels = [-100] * len(prompt) + full[len(prompt):]
        with torch.no_grad():
            return model(input_ids=torch.tensor([full]), labels=torch.tensor([labels])).loss.item()

    true = sum(answer_loss(m[:2], m[2]) for m in rows) / len(rows)
    swapped = sum(answer_loss(m[:2], rows[i - 1][2]) for i, m in enumerate(rows)) / len(rows)
    assert true > 0.8 * swapped, (true, swapped)


@pytest.mark.slow
def test_parallel_builders_share_one_build(tmp_path):
    code = ("import sys; from pathlib import Path; from engine import demo; "
            "print(demo.ensure_demo_model(Path(sys.argv[1]), log=lambda m: print('BUILD', m)))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    paths = {o.strip().splitlines()[-1] for o in outs}
    assert paths == {str(tmp_path / f"demo-model-{demo.recipe_hash()}")}
    assert sum("BUILD demo model:" in o for o in outs) == 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [f"demo-model-{demo.recipe_hash()}"]
