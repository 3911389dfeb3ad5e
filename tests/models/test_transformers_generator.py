"""The in-process transformers generator: same semantics as the OpenAI backend."""

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts.chat import prompt_ids, to_messages
from rfprm_tts.generators import GenerationRequest
from rfprm_tts.generators.transformers import TransformersGenerator
from rfprm_tts.settings import GeneratorSettings


def make(model_dir, **kw) -> TransformersGenerator:
    return TransformersGenerator(GeneratorSettings(model=str(model_dir), device="cpu", **kw))


def generate(gen, **kw):
    return asyncio.run(gen.generate(GenerationRequest("Compute 7 + 5 * 3 - 4.", **kw)))


def reference_greedy(model_dir, prompt_ids, max_new_tokens):
    """Plain greedy decoding, one token at a time, as a reference."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = list(prompt_ids)
    eos = AutoTokenizer.from_pretrained(model_dir).eos_token_id
    for _ in range(max_new_tokens):
        with torch.no_grad():
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        ids.append(nxt)
        if nxt == eos:
            break
    return ids[len(prompt_ids) :]


def test_greedy_matches_plain_decoding_and_counts_tokens(tiny_generator_dir):
    gen = make(tiny_generator_dir, temperature=0.0, max_tokens=12)
    result = generate(gen, n=2)
    prompt = prompt_ids(gen.tokenizer, to_messages("Compute 7 + 5 * 3 - 4."))
    expected = reference_greedy(tiny_generator_dir, prompt, 12)
    tokenizer = gen.tokenizer
    eos_hit = expected[-1] == tokenizer.eos_token_id
    text = tokenizer.decode(expected[:-1] if eos_hit else expected, skip_special_tokens=True)
    assert [c.text for c in result.completions] == [text, text]
    assert result.completions[0].tokens == len(expected)
    assert result.completions[0].finish_reason == ("stop" if eos_hit else "length")
    assert result.prompt_tokens == len(prompt) and result.generated_tokens == 2 * len(expected)
    assert result.calls == 1


def test_stop_string_is_cut_like_a_server_does(tiny_generator_dir):
    gen = make(tiny_generator_dir, temperature=0.0, max_tokens=24)
    full = generate(gen, n=1).completions[0].text
    assert len(full) >= 4
    stop = full[2:4]
    cut = generate(gen, n=1, stop=[stop]).completions[0]
    assert cut.text == full[: full.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.tokens <= len(full)


def test_prefix_is_continued_not_restarted(tiny_generator_dir):
    gen = make(tiny_generator_dir, temperature=0.0, max_tokens=10)
    full = generate(gen, n=1, max_tokens=10).completions[0].text
    head = full[:3]
    rest = generate(gen, n=1, prefix=head, max_tokens=7).completions[0].text
    # Greedy and causal: continuing the first 3 characters gives the rest of the same text.
    assert head + rest == full[: len(head) + len(rest)]
    assert (
        prompt_ids(gen.tokenizer, to_messages("q"), prefix=head)[-3:]
        == gen.tokenizer(head, add_special_tokens=False)["input_ids"]
    )


def test_seeded_sampling_is_reproducible(tiny_generator_dir):
    a = [c.text for c in generate(make(tiny_generator_dir, seed=7, max_tokens=16), n=3).completions]
    b = [c.text for c in generate(make(tiny_generator_dir, seed=7, max_tokens=16), n=3).completions]
    c = [c.text for c in generate(make(tiny_generator_dir, seed=8, max_tokens=16), n=3).completions]
    assert a == b and a != c
    assert len(set(a)) > 1  # n samples differ from each other


def test_logprobs_of_the_sampled_tokens(tiny_generator_dir):
    gen = make(tiny_generator_dir, temperature=0.0, max_tokens=6, logprobs=True)
    completion = generate(gen, n=1).completions[0]
    assert len(completion.logprobs) == completion.tokens
    # Greedy: each token is the argmax, so its log-probability is the row's maximum.
    prompt = prompt_ids(gen.tokenizer, to_messages("Compute 7 + 5 * 3 - 4."))
    ids = prompt + gen.tokenizer(completion.text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = gen.model(torch.tensor([ids])).logits[0].log_softmax(-1)
    for i, lp in enumerate(completion.logprobs[: len(ids) - len(prompt)]):
        assert lp == pytest.approx(logits[len(prompt) - 1 + i].max().item(), abs=1e-4)
    assert make(tiny_generator_dir, max_tokens=4).settings.logprobs is False
