"""Tiny real tokenizers and models built locally (no hub), for the data pipeline tests."""
from __future__ import annotations

from functools import lru_cache

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Mistral style: no generation prompt at all, the answer follows [/INST] and ends with </s>.
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
           "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
           "{{ ' ' + message['content'] + eos_token }}{% else %}{{ message['content'] + '\n\n' }}{% endif %}"
           "{% endfor %}")

SPECIAL = ["<unk>", "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "You are a helpful assistant. Answer briefly and politely.",
    "What is two plus two? Two plus two is four.",
    "Hello! How can I help you today? Please tell me more.",
    "system user assistant tool [INST] [/INST] function call observation",
    "Translate the following sentence into French: hello world, bonjour le monde.",
    "0 1 2 3 4 5 6 7 8 9 10 + - = ? ! , . : ; ' \" ( ) { } [ ]",
]


@lru_cache(maxsize=None)
def _backend_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    return tok.to_str()


def make_tokenizer(template: str | None = "chatml", vocab_size: int = 400):
    """A fast BPE tokenizer with ChatML/Llama-3/Mistral special tokens and the named template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    templates = {"chatml": CHATML, "llama3": LLAMA3, "mistral": MISTRAL, None: None}
    bos, eos = {"chatml": (None, "<|im_end|>"), "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
                "mistral": ("<s>", "</s>"), None: ("<s>", "</s>")}[template]
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_backend_json(vocab_size)),
                                  bos_token=bos, eos_token=eos, pad_token="<pad>", unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": [s for s in SPECIAL if s not in ("<unk>", "<pad>")]})
    tok.chat_template = templates[template]
    tok.name_or_path = f"tiny-{template}"
    return tok


def tiny_llama(vocab_size: int, seed: int = 0):
    """A random-weight 2-layer LlamaForCausalLM in float32 with sdpa attention."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    return model
