"""Stopping the thinking early and holding it to a budget (rfprm_tts.search.thinking), on
scripted traces: one character is one token, so the token at which each method stops, the
text it leaves and what it cost are worked out by hand in each test."""

import pytest

from helpers.fakes import DigitScorer, ThinkingTraceGenerator
from rfprm_tts import ConfigError, ReasoningSolver, Settings
from rfprm_tts.search.thinking import ThinkingControl
from rfprm_tts.strategies import build_strategy
from rfprm_tts.strategies.base import SamplingParams, uses_prm
from rfprm_tts.trajectory import SolveResult, Usage

PROMPT = "\n</think>\n\nThe answer is \\boxed{"  # the default answer_prompt
CLOSE = "</think>"


def trace(body: str, answer: str) -> str:
    return f"<think>{body}{CLOSE}\n\nThe answer is \\boxed{{{answer}}}."


def solve(generator, strategy="best_of_n", aggregation="last", **params):
    settings = Settings.load(strategy=strategy, prm=dict(aggregation=aggregation))
    solver = ReasoningSolver(settings, generator=generator, scorer=DigitScorer())
    return solver.solve("q", **params)


def probes(generator):
    return [r for r in generator.requests if r.prefix.endswith(PROMPT)]


def answers_by_position(table):
    """A probe after j characters of the trace answers table[j] (then "}." closes it)."""

    def rest(i, j, added):
        assert added == PROMPT, added
        return f"{table[j]}}}."

    return rest


def test_probes_stop_a_sample_once_k_in_a_row_agree():
    # probe_every 10: probes after 10, 20, 30 tokens answer 5, 6, 6; with probe_agree 2 the
    # third probe agrees with the second, so the sample stops at token 30 with answer 6.
    gen = ThinkingTraceGenerator([trace("a" * 93, "9")], rest=answers_by_position({10: "5", 20: "6", 30: "6"}))
    result = solve(gen, n=1, early_exit="probe", probe_every=10, probe_agree=2)
    best = result.best
    assert best.trajectory.text == trace("a" * 93, "9")[:30] + PROMPT + "6}."
    assert result.answer == "6" and best.finish_reason == "stop"
    assert best.generated_tokens == 30 + 3  # the thinking, then the accepted probe as the answer
    assert result.usage.probe_tokens == 3 * 3 and result.usage.generated_tokens == 30 + 9
    assert [r.sampling.temperature for r in probes(gen)] == [0.0] * 3
    assert all(r.sampling.max_tokens == 16 and r.sampling.logprobs for r in probes(gen))
    chunks = [r for r in gen.requests if not r.prefix.endswith(PROMPT)]
    assert [len(r.prefix) for r in chunks] == [0, 10, 20] and all(r.stop == [CLOSE] for r in chunks)
    assert result.details["thinking"] == {"probe": 1}


def test_a_disagreeing_probe_starts_the_count_again():
    # 5, 6, 5, 5: the pairs (5,6) and (6,5) disagree; (5,5) at token 40 agrees.
    gen = ThinkingTraceGenerator([trace("a" * 93, "9")], rest=answers_by_position({10: "5", 20: "6", 30: "5", 40: "5"}))
    result = solve(gen, n=1, early_exit="probe", probe_every=10, probe_agree=2)
    assert result.answer == "5" and result.best.trajectory.text.startswith(trace("a" * 93, "9")[:40] + PROMPT)
    assert len(probes(gen)) == 4


def test_a_sample_that_closes_its_thinking_before_agreeing_ends_as_written():
    # "<think>" + 15 characters close at 22: chunks of 10, 10, then 2 + the 8-token close
    # (a stop string counts as generated); two probes (1, 2) never agree at probe_agree 3.
    text = trace("b" * 15, "9")
    gen = ThinkingTraceGenerator([text], rest=answers_by_position({10: "1", 20: "2"}))
    result = solve(gen, n=1, early_exit="probe", probe_every=10, probe_agree=3)
    assert result.best.trajectory.text == text and result.answer == "9"
    assert result.best.generated_tokens == 10 + 10 + 10 + len("\n\nThe answer is \\boxed{9}.")
    assert result.usage.probe_tokens == 6
    assert result.details["thinking"] == {"closed": 1}


def test_a_close_split_over_two_chunks_is_still_a_close():
    # The close starts at 25: the chunk 20-30 ends inside it ("</thi"), the next one holds the
    # rest and the start of the answer. The thinking ends at the close, the answer follows it.
    text = trace("b" * 18, "9")
    gen = ThinkingTraceGenerator([text], rest=answers_by_position({10: "1", 20: "2", 30: "3"}))
    result = solve(gen, n=1, early_exit="probe", probe_every=10, probe_agree=3)
    assert result.best.trajectory.text == text and result.answer == "9"
    assert result.best.trajectory.thinking == "b" * 18


def test_min_thinking_replaces_an_early_close_with_wait():
    # The trace closes after 15 tokens (+ 8 for the close: 23 < 40), so "Wait" goes where the
    # close was; the model then thinks 20 more tokens and closes at 23 + 28 = 51 >= 40.
    forced = "Wait" + "d" * 20 + CLOSE + "\n\nThe answer is \\boxed{5}."

    def rest(i, j, added):
        assert j == 15 and forced.startswith(added), (j, added)
        return forced[len(added) :]

    gen = ThinkingTraceGenerator([trace("c" * 8, "4")], rest=rest)
    result = solve(gen, n=1, min_thinking_tokens=40)
    assert result.best.trajectory.text == "<think>" + "c" * 8 + forced
    assert result.answer == "5" and result.usage.probe_tokens == 0
    assert result.best.generated_tokens == 23 + 28 + len("\n\nThe answer is \\boxed{5}.")


def test_max_thinking_closes_the_thinking_and_takes_the_answer():
    # probe_every 64 would overshoot: the chunk is cut to the 30 tokens the cap leaves.
    gen = ThinkingTraceGenerator([trace("e" * 200, "9")], rest=answers_by_position({30: "8"}))
    result = solve(gen, n=1, max_thinking_tokens=30)
    assert result.best.trajectory.text == trace("e" * 200, "9")[:30] + PROMPT + "8}."
    assert result.answer == "8" and result.best.generated_tokens == 33
    assert result.details["thinking"] == {"forced": 1} and result.usage.probe_tokens == 0


PARAGRAPHS = trace("11111\n\n22222\n\n33333\n\n", "3")  # "<think>11111" + "\n\n" ends at 14, the next at 21


def test_confidence_exit_checks_at_each_paragraph_and_stops_when_sure():
    # Chunks stop at the paragraph separator (put back): probes after 14 and 21 tokens; the
    # probe's tokens have probability 0.5 before token 20 and 0.95 after: stop at 21.
    gen = ThinkingTraceGenerator(
        [PARAGRAPHS], rest=answers_by_position({14: "1", 21: "2"}), probability=lambda i, j: 0.5 if j < 20 else 0.95
    )
    result = solve(gen, n=1, early_exit="confidence", exit_threshold=0.9)
    assert result.best.trajectory.text == PARAGRAPHS[:21] + PROMPT + "2}."
    assert result.answer == "2" and len(probes(gen)) == 2
    assert [r.stop for r in gen.requests if not r.prefix.endswith(PROMPT)] == [[CLOSE, "\n\n"]] * 2


def test_confidence_exit_needs_log_probabilities():
    with pytest.raises(ConfigError, match="early_exit 'confidence' reads token log-probabilities"):
        gen = ThinkingTraceGenerator([PARAGRAPHS], rest=answers_by_position({14: "1"}), logprobs=False)
        solve(gen, n=1, early_exit="confidence")


def test_prm_gated_exit_stops_when_the_prm_approves_the_trial_answer():
    # DigitScorer, aggregation "last": the trial answer's step scores its digit / 10. The probe
    # after 14 tokens answers 5 (0.5 < 0.6), after 21 answers 7 (0.7): stop there.
    gen = ThinkingTraceGenerator([PARAGRAPHS], rest=answers_by_position({14: "5", 21: "7"}))
    result = solve(gen, "majority_vote", n=1, early_exit="prm", exit_threshold=0.6)
    assert result.answer == "7" and result.best.trajectory.text == PARAGRAPHS[:21] + PROMPT + "7}."
    assert result.usage.prm_calls == 2  # one per probe round; majority_vote scores nothing else
    assert result.details["thinking"] == {"prm": 1}


def test_short_m_at_k_stops_the_others_once_m_samples_answer():
    # Three samples close their thinking at 12, 40 and 60 tokens; probe_every 10. In round 2
    # the first closes and answers; round 3 starts with 1 answer = finish_first: the others stop.
    traces = [trace("A" * 5, "1"), trace("B" * 33, "2"), trace("C" * 53, "2")]
    gen = ThinkingTraceGenerator(traces)
    result = solve(gen, "majority_vote", n=3, finish_first=1, probe_every=10)
    assert result.answer == "1" and result.details["thinking"] == {"closed": 1, "stopped": 2}
    stopped = [c for c in result.candidates if not c.ok]
    assert len(stopped) == 2 and all("finish_first" in c.error for c in stopped)
    assert result.usage.generated_tokens == len(traces[0]) + 2 * 20


def test_the_token_budget_cuts_thinking_samples():
    # Two samples, chunks of 10, budget 50: rounds of 20, 20, then the budget affords one more
    # chunk (10); then it is spent and both samples are cut.
    gen = ThinkingTraceGenerator([trace("x" * 200, "1"), trace("y" * 200, "1")])
    result = solve(gen, n=2, max_thinking_tokens=500, probe_every=10, token_budget=50)
    assert result.usage.generated_tokens == 50 and result.usage.budget_exhausted
    assert result.answer is None and all("token budget (50 tokens)" in c.error for c in result.candidates)


def test_thinking_controls_are_checked_and_decide_whether_the_prm_loads():
    with pytest.raises(ConfigError, match="answer_prompt must hold </think>"):
        build_strategy("best_of_n", answer_prompt="Answer: ")
    with pytest.raises(ConfigError, match="min_thinking_tokens is above max_thinking_tokens"):
        build_strategy("majority_vote", min_thinking_tokens=100, max_thinking_tokens=50)
    assert not uses_prm(build_strategy("majority_vote", early_exit="probe"))
    assert uses_prm(build_strategy("majority_vote", early_exit="prm"))
    assert uses_prm(build_strategy("adaptive_vote", early_exit="prm"))
    assert not uses_prm(build_strategy("adaptive_vote"))


def solved(params: dict) -> SolveResult:
    return SolveResult(
        question="q", answer=None, best=None, candidates=[], usage=Usage(), strategy="vote", strategy_params=params
    )


def test_the_strategy_line_leaves_out_thinking_knobs_only_while_all_are_off():
    off = SamplingParams(n=4).model_dump()
    assert ThinkingControl.idle_knobs(off) == set(ThinkingControl.model_fields)
    result = solved(off)
    assert result.params_text(hide=ThinkingControl.idle_knobs(off)) == "n=4"
    on = SamplingParams(n=4, early_exit="probe").model_dump()
    assert ThinkingControl.idle_knobs(on) == set()
    shown = solved(on).params_text()
    assert 'early_exit="probe"' in shown and 'answer_prompt="\\n</think>\\n\\nThe answer is \\\\boxed{"' in shown


# -- streamed: one request per sample, closed at the decision (generator.stream_thinking) ---


def streams(gen):
    return [r for r in gen.requests if not r.prefix.endswith(PROMPT) and r.n == 1 and r.stop == [CLOSE]]


def test_a_streamed_sample_stops_where_the_rounds_stop_and_its_stream_closes_there():
    # The first test's trace streamed: probes go out after 10, 20 and 30 characters while the
    # stream goes on; the third agrees with the second, so the sample ends at token 30 with
    # answer 6, as in rounds, and the stream closes a few characters later (the time the
    # deciding probe took), far before the trace's end. Every character the fake server sent
    # is counted; those past token 30 also as overrun.
    text = trace("a" * 93, "9")
    gen = ThinkingTraceGenerator([text], rest=answers_by_position({10: "5", 20: "6", 30: "6"}), stream="on")
    result = solve(gen, n=1, early_exit="probe", probe_every=10, probe_agree=2)
    assert result.best.trajectory.text == text[:30] + PROMPT + "6}." and result.answer == "6"
    assert result.best.generated_tokens == 30 + 3 and result.details["thinking"] == {"probe": 1}
    [(sent, whole)] = gen.streamed
    assert 30 <= sent < 40 and whole == len("<think>") + 93 + 1  # + 1: the close's piece
    assert result.usage.generated_tokens == sent + 3 * 3 and result.usage.overrun_tokens == sent - 30
    assert [len(r.prefix) - len(PROMPT) for r in probes(gen)] == [10, 20, 30]
    assert len(streams(gen)) == 1 and result.usage.generator_calls == 1 + 3


def test_a_streamed_close_before_min_thinking_opens_a_second_stream_after_wait():
    forced = "Wait" + "d" * 20 + CLOSE + "\n\nThe answer is \\boxed{5}."

    def rest(i, j, added):
        assert j == 15 and forced.startswith(added), (j, added)
        return forced[len(added) :]

    gen = ThinkingTraceGenerator([trace("c" * 8, "4")], rest=rest, stream="on")
    result = solve(gen, n=1, min_thinking_tokens=40)
    assert result.best.trajectory.text == "<think>" + "c" * 8 + forced and result.answer == "5"
    assert result.best.generated_tokens == 23 + 28 + len("\n\nThe answer is \\boxed{5}.")
    assert [r.prefix for r in streams(gen)] == ["", "<think>" + "c" * 8 + "Wait"]
    assert [sent == whole for sent, whole in gen.streamed] == [True, True]  # both ran to their close


def test_a_streamed_thinking_cap_is_the_streams_token_limit():
    gen = ThinkingTraceGenerator([trace("e" * 200, "9")], rest=answers_by_position({30: "8"}), stream="on")
    result = solve(gen, n=1, max_thinking_tokens=30)
    assert result.best.trajectory.text == trace("e" * 200, "9")[:30] + PROMPT + "8}." and result.answer == "8"
    assert [r.sampling.max_tokens for r in streams(gen)] == [30] and result.details["thinking"] == {"forced": 1}


def test_a_streamed_confidence_exit_probes_at_each_paragraph_end():
    gen = ThinkingTraceGenerator(
        [PARAGRAPHS],
        rest=answers_by_position({14: "1", 21: "2"}),
        probability=lambda i, j: 0.5 if j < 20 else 0.95,
        stream="on",
    )
    result = solve(gen, n=1, early_exit="confidence", exit_threshold=0.9)
    assert result.best.trajectory.text == PARAGRAPHS[:21] + PROMPT + "2}." and result.answer == "2"
    assert [len(r.prefix) - len(PROMPT) for r in probes(gen)] == [14, 21]


def test_streamed_short_m_at_k_closes_the_others_streams():
    # The first sample closes at 12 and answers; the other two are still streaming then, and
    # their streams close at once: well short of their 40 and 60 tokens.
    traces = [trace("A" * 5, "1"), trace("B" * 33, "2"), trace("C" * 53, "2")]
    gen = ThinkingTraceGenerator(traces, stream="on")
    result = solve(gen, "majority_vote", n=3, finish_first=1)
    assert result.answer == "1" and result.details["thinking"] == {"closed": 1, "stopped": 2}
    assert all("finish_first" in c.error for c in result.candidates if not c.ok)
    cut = [(sent, whole) for sent, whole in gen.streamed if sent < whole]
    assert len(cut) == 2 and all(sent < 25 for sent, _ in cut)
    answer_tokens = len("\n\nThe answer is \\boxed{1}.")
    # the first stream's last piece holds no character but the close's 8 tokens
    assert result.usage.generated_tokens == sum(sent for sent, _ in gen.streamed) - 1 + len(CLOSE) + answer_tokens


def test_the_token_budget_cuts_streamed_samples_as_they_go():
    # Two streams of 1 token per piece against a budget of 50: both stop once 50 are spent
    # (the other stream's piece in flight may add one), far short of their 200-token thoughts.
    gen = ThinkingTraceGenerator([trace("x" * 200, "1"), trace("y" * 200, "1")], stream="on")
    result = solve(gen, n=2, max_thinking_tokens=500, probe_every=10, token_budget=50)
    assert 50 <= result.usage.generated_tokens <= 51 and result.usage.budget_exhausted
    assert result.answer is None and all("token budget (50 tokens)" in c.error for c in result.candidates)


def test_auto_streams_unless_probes_run():
    # generator.stream_thinking "auto": short-m@k and thinking budgets stream (a stream cut costs
    # nothing); early exit probes in chunks (a stream would run on while its probe waits).
    traces = [trace("A" * 5, "1"), trace("B" * 33, "2")]
    gen = ThinkingTraceGenerator(traces, stream="auto")
    solve(gen, "majority_vote", n=2, finish_first=1)
    assert len(gen.streamed) == 2
    gen = ThinkingTraceGenerator([trace("a" * 93, "9")], rest=answers_by_position({10: "5", 20: "5"}), stream="auto")
    result = solve(gen, n=1, early_exit="probe", probe_every=10, probe_agree=2)
    assert gen.streamed == [] and result.answer == "5"


def test_a_streamed_sample_whose_answer_the_budget_cannot_pay_is_cut_not_answered():
    # "<think>AAAAA" (12) + the close (8) spend the whole budget of 20 as the thinking closes:
    # no answer can follow, so the sample is cut by the budget rather than kept as thinking alone.
    gen = ThinkingTraceGenerator([trace("A" * 5, "1")], stream="on")
    result = solve(gen, n=1, finish_first=1, token_budget=20)
    assert result.usage.generated_tokens == 20 and result.answer is None
    assert [c.error for c in result.candidates] == ["cut short by the solve's token budget (20 tokens)"]
