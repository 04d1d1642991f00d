"""A user's world in miniature, made in the test: a byte-level BPE tokenizer trained with the
`tokenizers` library (digits split one per token, as Qwen and Llama 3 do; a ChatML chat
template; no thread tags) and random-weight Llama 3, Qwen2 and Qwen3 checkpoints built
with transformers and saved the way Hugging Face ships them (safetensors beside the
tokenizer), so tests take the code path a user's local model takes.
"""
from __future__ import annotations

import random
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = (
    "the a cat dog sat ran on under mat tree red blue one two three four is was what how many answer so "
    "she he has had buys sells each apples pens boxes cost dollars total more than left we try add make"
).split()
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def bpe_tokenizer(vocab_size: int = 500, seed: int = 0, chat_template: str | None = CHATML):
    """A Qwen-style tokenizer: no BOS, `<|im_end|>` ends a turn (the EOS), `<|endoftext|>` pads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + f" {rng.randint(0, 9999)} + {rng.randint(0, 99)}."
        for _ in range(500)
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIALS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    bpe.train_from_iterator(sentences, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"], clean_up_tokenization_spaces=False,
    )  # fmt: skip
    tokenizer.chat_template = chat_template
    return tokenizer


def model_config(arch: str, tokenizer):
    """A two-layer config of `arch`: llama3 (rope scaling), qwen2 (q/k/v bias) or qwen3
    (q/k norm, a head_dim that is not hidden/heads, untied head)."""
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    shape = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    if arch == "llama3":
        return LlamaConfig(**shape, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 256,
        })  # fmt: skip
    if arch == "qwen2":
        return Qwen2Config(**shape, tie_word_embeddings=True)
    if arch == "qwen3":
        return Qwen3Config(**shape, head_dim=24, tie_word_embeddings=False)
    raise ValueError(arch)


def save_model(directory: Path, arch: str, tokenizer, seed: int = 0) -> Path:
    """A random model of `arch` with non-trivial biases and norms, saved with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(model_config(arch, tokenizer))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
            elif name.endswith(("q_norm.weight", "k_norm.weight")):
                parameter.uniform_(0.5, 1.5)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory
