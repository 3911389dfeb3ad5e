"""Early exit with the thinking streamed (generator.stream_thinking "on"):
the stream is closed at the decision, so the upstream stops generating there. Against a
scripted streaming server that records how far each stream got, over real HTTP with the
openai SDK."""

import time

import pytest

from helpers.servers import Reply, chat_body, stream_chunks
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.errors import GenerationError

PROMPT = "\n</think>\n\nThe answer is \\boxed{"
THINKING = "<think>" + "a" * 300  # 307 tokens, one per chunk, 10 ms apart: 3 s if nobody closes it


def solver_for(server, prm_dir, stream_thinking: str = "on", n: int = 1, **generator) -> ReasoningSolver:
    generator = dict(backend="openai", base_url=server.base_url, model="m", max_retries=0, **generator)
    settings = Settings.load(
        generator={**generator, "stream_thinking": stream_thinking},
        prm=dict(model=str(prm_dir)),
        strategy="majority_vote",
        n=n,
    )
    return ReasoningSolver(settings)


def thinker(body: dict) -> Reply:
    """Streams the thinking; a probe (the partial answer continued after answer_prompt) answers 7."""
    if body.get("stream"):
        return Reply(chunks=stream_chunks(THINKING, "length"), chunk_delay_s=0.01)
    assert body["messages"][-1]["content"].endswith(PROMPT) and body["temperature"] == 0
    return Reply(200, chat_body(["7}."], completion_tokens=3))


def recorded(server, timeout_s: float = 10.0) -> list[tuple[int, int]]:
    """The server's record of its streams, once its stream has seen the client close."""
    deadline = time.monotonic() + timeout_s
    while not server.streamed and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.streamed


def test_the_stream_closes_at_the_decision_and_the_upstream_stops_there(scripted_server, tiny_prm_dir):
    # probes after 10 and 20 tokens both answer 7: the sample stops at token 20 (+ the probe's
    # "7}."), and the upstream's stream is closed a few chunks later, not after 307.
    scripted_server.default = thinker
    with solver_for(scripted_server, tiny_prm_dir) as solver:
        result = solver.solve("q", early_exit="probe", probe_every=10, probe_agree=2, probe_tokens=4)
    assert result.answer == "7" and result.best.trajectory.text == THINKING[:20] + PROMPT + "7}."
    [(sent, whole)] = recorded(scripted_server)
    assert whole == 308 and 21 <= sent < 60  # the role chunk, 20 tokens, then what came while the probe ran
    usage = result.usage
    streamed = usage.generated_tokens - usage.probe_tokens  # what the client read of the stream
    assert usage.probe_tokens == 2 * 3 and usage.overrun_tokens == streamed - 20
    assert 0 <= (sent - 1) - streamed <= 3  # what was on the wire when it closed, and the server's next write
    assert usage.prompt_tokens == 7 + 2 * 7 and usage.generator_calls == 3
    assert [r.get("stream", False) for r in scripted_server.requests].count(True) == 1


def test_chunks_instead_of_a_stream_when_asked(scripted_server, tiny_prm_dir):
    def chunked(body: dict) -> Reply:
        assert not body.get("stream")
        if body["messages"][-1]["content"].endswith(PROMPT):
            return Reply(200, chat_body(["7}."], completion_tokens=3))
        return Reply(
            200,
            {
                **chat_body(["a" * 10], completion_tokens=10),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "a" * 10}, "finish_reason": "length"}
                ],
            },
        )

    scripted_server.default = chunked
    with solver_for(scripted_server, tiny_prm_dir, stream_thinking="off") as solver:
        result = solver.solve("q", early_exit="probe", probe_every=10, probe_agree=2, probe_tokens=4)
    assert result.answer == "7" and scripted_server.streamed == []
    assert len(scripted_server.requests) == 4  # chunk, probe, chunk, probe


def test_a_stream_cut_midway_fails_its_sample_with_the_way_out(scripted_server, tiny_prm_dir):
    # The connection ends after 30 chunks with no finish reason (a proxy that cut it, or a
    # server that ignores "stream"): one line naming the setting, not a hang or a traceback.
    scripted_server.default = Reply(chunks=stream_chunks(THINKING, "length")[:30])
    with solver_for(scripted_server, tiny_prm_dir) as solver, pytest.raises(GenerationError) as failure:
        solver.solve("q", early_exit="probe", probe_every=100)
    message = str(failure.value)
    assert "ended a streamed answer before its finish reason" in message
    assert "generator.stream_thinking = 'off'" in message and "\n" not in message


def test_open_streams_do_not_hold_the_places_their_probes_need(scripted_server, tiny_prm_dir):
    """generator.max_concurrency 1 and two samples: a stream takes the one place only to open,
    so the other stream and every probe still go out, and both samples stop at token 20."""
    scripted_server.default = thinker
    with solver_for(scripted_server, tiny_prm_dir, n=2, max_concurrency=1) as solver:
        result = solver.solve("q", early_exit="probe", probe_every=10, probe_agree=2, probe_tokens=4)
    assert result.details["thinking"] == {"probe": 2}
    deadline = time.monotonic() + 10
    while len(scripted_server.streamed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(scripted_server.streamed) == 2 and all(sent < 100 for sent, _ in scripted_server.streamed)
