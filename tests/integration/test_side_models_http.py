"""Side models over HTTP, through the openai SDK. Speculative steps with the draft served by the
real vLLM server (its tokens counted apart from the target's, exactly as the server counts them),
and by a server that fails (the target writes those steps; the solve does not fail). genselect
with a selector served by a scripted server (its pick wins over the majority, its tokens counted
apart) and by one that fails (the majority answer). The target is the bundled in-process model."""

import re

from helpers.servers import Reply, chat_body
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.cli import main

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


def genselect(selector_url: str) -> Settings:
    return Settings(
        strategy="genselect",
        n=8,
        generator={"model": "demo", "seed": 0},
        selector={"backend": "openai", "base_url": selector_url, "model": "judge", "max_retries": 1, "backoff_s": 0.01},
    )


def test_a_selector_over_http_picks_against_the_majority_and_is_counted_apart(scripted_server):
    scripted_server.requests.clear()
    scripted_server.default = Reply(body=chat_body(["They differ in the last step.\nBest: 1"], completion_tokens=11))
    with ReasoningSolver(genselect(scripted_server.base_url)) as solver:
        result = solver.solve(QUESTION)
    (request,) = scripted_server.requests  # the demo model's 8 samples reach 3 answers: one selection
    prompt = request["messages"][-1]["content"]
    shown = re.findall(r"Final answer: (\S+)", prompt)
    assert request["model"] == "judge" and request["temperature"] == 0.0 and len(shown) >= 2
    votes = [c.answer for c in result.candidates]
    assert votes.count(shown[0]) > votes.count(shown[1])  # the most common answer is shown first
    assert result.answer == shown[1]  # the selector's pick, not the majority's
    usage = result.usage
    assert (usage.selector_calls, usage.selector_prompt_tokens, usage.selector_generated_tokens) == (1, 7, 11)
    assert usage.generator_calls == 1 and usage.generated_tokens == sum(c.generated_tokens for c in result.candidates)


def test_a_failing_selector_server_leaves_the_majority_answer_and_says_why(scripted_server, monkeypatch, capfd):
    scripted_server.requests.clear()
    scripted_server.default = Reply(500, {"error": {"message": "judge is down"}})
    with ReasoningSolver(genselect(scripted_server.base_url)) as solver:
        result = solver.solve(QUESTION)
    votes = [c.answer for c in result.candidates]
    assert result.answer == max(set(votes) - {None}, key=votes.count)
    details = result.details
    assert (details["selector_failures"], details["unreadable_picks"], result.usage.selector_generated_tokens) == (
        1,
        0,
        0,
    )
    assert "judge is down" in details["selector_error"]  # the user learns why the majority answered
    with ReasoningSolver(genselect("http://127.0.0.1:9/v1")) as solver:  # nothing listens there
        unreachable = solver.solve(QUESTION).details["selector_error"]
    assert "check RFPRM_SELECTOR__BASE_URL" in unreachable  # the selector's settings, not the generator's
    assert len(scripted_server.requests) == 2  # retried once, then given up
    # the CLI's text says it too, on the selector's line
    flags = ["--strategy", "genselect", "--model", "demo", "-n", "8", "--seed", "0", "--selector-model", "judge"]
    flags += ["--selector-backend", "openai", "--selector-base-url", scripted_server.base_url]
    monkeypatch.setenv("RFPRM_SELECTOR__MAX_RETRIES", "0")
    capfd.readouterr()
    assert main(["solve", QUESTION, *flags]) == 0  # in process: a subprocess would add seconds of imports
    line = next(x for x in capfd.readouterr().out.splitlines() if x.startswith("Selector:"))
    assert "1 call(s); 0 of 1 pick(s) unreadable; 1 failed:" in line and "judge is down" in line
