"""The recipe for ftwb's tiny demo model: a byte-level BPE tokenizer and a small Llama.

Everything is built locally and deterministically from this file and tickets.jsonl, so
the demo needs no model hub. The base model gets a short pre-training on plain ticket
texts and generic sentences (never the assistant's JSON answers): it is a weak language
model that has not seen the extraction task, so fine-tuning has something to teach.

engine/demo.py calls build(); the cache key is a hash of this file and the data, so any
change to a constant below makes a fresh model.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

SEED = 1234
VOCAB_SIZE = 3072           # an upper bound: the corpus is small, BPE stops at whole words
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "<|endoftext|>"]
BOS, EOS, PAD, DOC_SEP = "<|begin_of_text|>", "<|im_end|>", "<|pad|>", "<|endoftext|>"

MODEL = dict(hidden_size=160, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5,
             tie_word_embeddings=False, initializer_range=0.02)

PRETRAIN_STEPS = 150
PRETRAIN_BATCH = 12
PRETRAIN_SEQ = 128
PRETRAIN_LR = 3e-3

# ChatML; with add_generation_prompt the assistant header is opened for generation.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Generic sentences so the base model is a (very small) model of English, not only tickets.
GENERIC = [
    "The weather was mild for most of the week, with light rain on Thursday evening.",
    "A good recipe lists its ingredients first and then explains each step in order.",
    "The library opens at nine in the morning and closes at six in the evening.",
    "She packed a small bag, locked the door and walked to the station.",
    "Most people check their email several times a day, often on their phones.",
    "The train was late again, so the meeting started without him.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "He bought a new notebook and wrote the plan for the month on the first page.",
    "Our team ships a small update every week and a larger release every quarter.",
    "The museum has a quiet garden where visitors can sit and read.",
    "Prices rose slowly over the year, while wages stayed almost flat.",
    "If the device feels warm, let it cool down before charging it again.",
    "The shop on the corner sells fresh bread, coffee and newspapers.",
    "Customers often ask the same questions, so a clear help page saves time.",
    "A short walk after lunch helps many people stay focused in the afternoon.",
    "The package left the warehouse on Monday and reached the city on Wednesday.",
]


# What a generic chat assistant says to a ticket. The base model learns to answer tickets
# like this, so out of the box it replies politely instead of extracting fields: the
# fine-tune has to teach the JSON task, which the demo's evaluation then shows.
REPLIES = [
    "Thank you for reaching out. We are sorry for the trouble and will look into it right away.",
    "Thanks for contacting support. A member of our team will get back to you within a day.",
    "We appreciate your message. Could you share a few more details so we can help?",
    "Sorry to hear about this. We have passed your request to the right team.",
    "Thank you for your patience. We will update you by email as soon as we know more.",
    "Thanks for letting us know. Please check your inbox for our next steps.",
]


def _random_records(answers: list[dict], n: int, rng) -> list[str]:
    """Answer-shaped JSON with every value drawn independently: the format, not the task."""
    keys = list(answers[0])
    values = {k: sorted({json.dumps(a[k]) for a in answers}) for k in keys}
    out = []
    for _ in range(n):
        rec = {k: json.loads(rng.choice(values[k])) for k in keys}
        if rec.get("order_id") is not None:
            rec["order_id"] = f"#{rng.choice('ABCKMRT')}{rng.randint(10000, 99999)}"
        out.append(json.dumps(rec, separators=(",", ":")))
    return out


def corpus_texts(tickets: Path) -> tuple[list[str], list[str]]:
    """(texts for the tokenizer, documents for pre-training).

    Pre-training sees generic sentences, ticket texts (half of them as ChatML
    conversations in which the assistant gives a generic support reply, so the template
    tokens mean something) and answer-shaped JSON records with random values as plain
    documents. It never sees a ticket next to its JSON answer, nor JSON after an assistant
    header: the base model knows JSON but answers tickets with a polite reply.
    """
    import random

    rng = random.Random(SEED)
    rows = [json.loads(line)["messages"] for line in tickets.read_text(encoding="utf-8").splitlines()]
    tok_texts = list(GENERIC) + list(REPLIES) + [m["content"] for msgs in rows for m in msgs]
    docs = list(GENERIC) * 4
    for msgs in rows:
        system, user = msgs[0]["content"], msgs[1]["content"]
        if rng.random() < 0.5:
            docs.append(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                        f"<|im_start|>assistant\n{rng.choice(REPLIES)}<|im_end|>\n")
        else:
            docs.append(user)
    answers = [json.loads(msgs[-1]["content"]) for msgs in rows]
    docs += _random_records(answers, len(rows) // 2, rng)
    rng.shuffle(docs)
    return tok_texts, docs


def build_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=None, clean_up_tokenization_spaces=False,
                                   model_max_length=MODEL["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _pretrain_batches(tokenizer, texts: list[str], generator):
    """Endless random windows over the stream of documents joined by the separator."""
    import torch

    sep = tokenizer.convert_tokens_to_ids(DOC_SEP)
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        ids.append(sep)
    stream = torch.tensor(ids, dtype=torch.long)
    span = PRETRAIN_SEQ + 1
    while True:
        starts = torch.randint(0, len(stream) - span, (PRETRAIN_BATCH,), generator=generator)
        yield torch.stack([stream[s:s + span] for s in starts.tolist()])


def build(out_dir: Path, tickets: Path, log=print) -> dict:
    """Build tokenizer + model into out_dir (an empty directory); return build facts."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    t0 = time.monotonic()
    torch.manual_seed(SEED)
    tok_texts, docs = corpus_texts(tickets)
    tokenizer = build_tokenizer(tok_texts)
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=ids[BOS], eos_token_id=ids[EOS],
                         pad_token_id=ids[PAD], **MODEL)
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"demo model: vocab {len(tokenizer)}, {n_params / 1e6:.2f}M parameters; pre-training {PRETRAIN_STEPS} steps")

    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = PRETRAIN_STEPS // 10
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, PRETRAIN_STEPS) / PRETRAIN_STEPS)))
    model.train()
    batches = _pretrain_batches(tokenizer, docs, gen)
    losses = []
    for step in range(PRETRAIN_STEPS):
        batch = next(batches)
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            log(f"  step {step + 1}/{PRETRAIN_STEPS}: loss {sum(losses[-50:]) / 50:.3f}")
    model.eval()

    model.generation_config = GenerationConfig(bos_token_id=ids[BOS], eos_token_id=[ids[EOS], ids[DOC_SEP]],
                                               pad_token_id=ids[PAD], do_sample=False, max_new_tokens=128)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    facts = {"parameters": n_params, "vocab_size": len(tokenizer), "pretrain_steps": PRETRAIN_STEPS,
             "pretrain_loss_first": round(losses[0], 4), "pretrain_loss_last": round(sum(losses[-20:]) / 20, 4),
             "build_seconds": round(time.monotonic() - t0, 1)}
    (out_dir / "demo_build.json").write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
    return facts
