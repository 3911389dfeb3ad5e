"""The tiny checkpoints tests and the demo world are built from: real formats, every loader
agrees on them."""

from transformers import AutoConfig, AutoTokenizer

from rfprm_tts.demo.tiny import build_tokenizer

TEXT_WITH_EVERYTHING = "Compute 7 + 5 * 3 - 4.\n\n<think>x\ty</think> \\boxed{-3}. é€ 中"


def test_saved_tokenizer_loads_identically_through_auto_tokenizer(tiny_generator_dir):
    built = build_tokenizer()
    loaded = AutoTokenizer.from_pretrained(tiny_generator_dir)
    messages = [
        {"role": "user", "content": TEXT_WITH_EVERYTHING},
        {"role": "assistant", "content": "5 * 3 = 15<extra_0>7 + 15 = 22<extra_0>"},
    ]
    text = built.apply_chat_template(messages, tokenize=False)
    assert loaded.apply_chat_template(messages, tokenize=False) == text
    ids = built(text, add_special_tokens=False)["input_ids"]
    assert loaded(text, add_special_tokens=False)["input_ids"] == ids
    assert loaded.decode(ids) == text
    for token in ("<extra_0>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        assert loaded.convert_tokens_to_ids(token) == built.convert_tokens_to_ids(token)
        assert len(loaded(token, add_special_tokens=False)["input_ids"]) == 1


def test_one_token_per_ascii_character():
    tokenizer = build_tokenizer()
    text = "12 * 7 = 84<extra_0>The answer is \\boxed{-84}.<extra_0>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) - 2 * len("<extra_0>") + 2


def test_configs_name_the_real_architectures(tiny_generator_dir, tiny_prm_dir):
    gen, prm = AutoConfig.from_pretrained(tiny_generator_dir), AutoConfig.from_pretrained(tiny_prm_dir)
    assert gen.architectures == ["Qwen2ForCausalLM"] and prm.architectures == ["Qwen2ForProcessRewardModel"]
    assert prm.num_labels == 2
    for cfg in (gen, prm):
        assert cfg.hidden_size // cfg.num_attention_heads >= 32  # vLLM's CPU attention needs it
