"""Speculative steps with the draft over HTTP: served by the real vLLM server (its tokens counted
apart from the target's, exactly as the server counts them), and by a server that fails (the
target writes those steps; the solve does not fail). The target is the bundled in-process model."""

from helpers.servers import Reply
from rfprm_tts import ReasoningSolver, Settings

QUESTION = "Compute 8 + 6 - 3."


def settings(draft: dict, prm_dir) -> Settings:
    return Settings(
        n=1,
        strategy="speculative_steps",
        strategy_params={"threshold": 0.0, "max_steps": 3},  # every draft step that comes back is taken
        generator={"max_tokens": 48, "seed": 0},
        draft={"backend": "openai", "max_retries": 1, "backoff_s": 0.01, "timeout_s": 30, **draft},
        prm={"model": str(prm_dir)},
    )


def test_a_draft_on_the_real_vllm_server_is_counted_apart(vllm_server, tiny_prm_dir):
    before = vllm_server.metric("vllm:generation_tokens_total")
    config = settings({"base_url": vllm_server.base_url, "model": "tiny"}, tiny_prm_dir)
    with ReasoningSolver(config) as solver:
        result = solver.solve(QUESTION)
    usage = result.usage
    assert usage.draft_calls >= 1 and usage.draft_generated_tokens > 0
    assert vllm_server.metric("vllm:generation_tokens_total") - before == usage.draft_generated_tokens
    assert "draft" in result.best.step_models and result.details["accepted"] >= 1


def test_a_failing_draft_server_hands_its_steps_to_the_target(scripted_server, tiny_prm_dir):
    scripted_server.default = Reply(500, {"error": {"message": "draft is down"}})
    config = settings({"base_url": scripted_server.base_url, "model": "draft"}, tiny_prm_dir)
    with ReasoningSolver(config) as solver:
        result = solver.solve(QUESTION)
    assert result.details["draft_failures"] >= 1 and set(result.best.step_models) == {"target"}
    assert result.usage.draft_generated_tokens == 0 and result.usage.generated_tokens > 0
    assert result.best.trajectory.text and len(scripted_server.requests) >= 2  # retried, then given up
