"""The demo-think world's task: the demo world's arithmetic, worked out inside `<think>`, checked,
and then answered as the demo world answers (rfprm_tts.demo.arithmetic).

    Compute 7 + 5 * 3 - 4.
    <think>
    5 * 3 = 16

    7 + 16 = 23

    23 - 4 = 19

    Wait, let me check.

    5 * 3 = 15

    7 + 15 = 22

    22 - 4 = 18

    I had 19 before; it is 18.
    </think>

    The answer is \\boxed{18}.

The first attempt works the problem step by step; in the training traces it carries a slip (one
result digit changed, the later steps computed on from the wrong value) with probability
`slip_rate`. Then come check passes ("Wait, let me check." and the steps again, always right in
training: one for 1 operation, two for 2-4), and a line settling the value, which says so when
the check changed it. Steps are paragraphs ("\\n\\n" between them), so the thinking cuts into
steps as rfprm_tts.trajectory.Trajectory.from_response cuts any `<think>` section.

Early exit probes the thinking: it appends PROBE at any point and reads the model's answer, which
the training data teaches to be the last value the cut thinking completed (`probe_cut`).
"""

from __future__ import annotations

import random
import re

from rfprm_tts.demo.arithmetic import (
    ANSWER_FORM,
    STEP_FORM,
    Difficulty,
    Problem,
    apply,
    canonical_index,
    digit_labels,
    digit_slip,
    final_step,
)
from rfprm_tts.demo.arithmetic import within_world as arithmetic_within_world
from rfprm_tts.text import DEFAULT_STEP_SEPARATOR, THINK_CLOSE, THINK_OPEN, extract_answer, split_steps, split_thinking

SEP = DEFAULT_STEP_SEPARATOR
DIFFICULTY = Difficulty(min_ops=1, max_ops=4)  # "Compute 1 + 2." is inside this world
CHECK = "Wait, let me check."
SETTLE_FORM = re.compile(r"(?:So it is|I had (-?\d+) before; it is) (-?\d+)\.")
OPEN = f"{THINK_OPEN}\n"  # how a response starts
PROBE = f"{THINK_CLOSE}\n\nThe answer is \\boxed{{"  # what early exit appends to cut thinking


def check_passes(n_ops: int) -> int:
    """How many check passes a problem with `n_ops` operations gets: more for harder ones."""
    return 1 if n_ops == 1 else 2


def settle_line(before: int | None, value: int) -> str:
    """The line that settles the value after the checks (`before`: what the first attempt had)."""
    return f"So it is {value}." if before in (None, value) else f"I had {before} before; it is {value}."


def line_value(step: str) -> int | None:
    """The value a thinking step completes: a computation's result or a settling line's value."""
    if m := STEP_FORM.fullmatch(step):
        return int(m[4])
    if m := SETTLE_FORM.fullmatch(step):
        return int(m[2])
    return None


def attempt_lines(problem: Problem, rng: random.Random | None = None) -> list[str]:
    """The first attempt: the canonical steps, or (given `rng`) with one result digit changed
    (arithmetic.digit_slip) and the steps after it computed on from the wrong value."""
    lines = problem.solution().split(SEP)[:-1]
    slipped = digit_slip(lines, rng) if rng is not None else None
    if slipped is None:
        return lines
    state = (list(problem.numbers), list(problem.ops))
    for _ in slipped[:-1]:
        state = apply(state, canonical_index(state[1]))
    m = STEP_FORM.fullmatch(slipped[-1])
    assert m is not None, "digit_slip changes a digit of a computed step"
    state = apply(state, canonical_index(state[1]), int(m[4]))
    rest = Problem(tuple(state[0]), tuple(state[1])).solution().split(SEP)[:-1]
    return [*slipped, *rest]


def thinking_steps(problem: Problem, rng: random.Random | None = None, slip_rate: float = 0.0) -> list[str]:
    """A training trace's thinking steps: a first attempt that slips with probability
    `slip_rate`, the check passes (always right), and the settling line."""
    slip = rng is not None and rng.random() < slip_rate
    first = attempt_lines(problem, rng if slip else None)
    steps = list(first)
    for _ in range(check_passes(len(problem.ops))):
        steps += [CHECK, *problem.solution().split(SEP)[:-1]]
    steps.append(settle_line(line_value(first[-1]), problem.answer))
    return steps


def response_text(problem: Problem, steps: list[str]) -> str:
    """A whole response: the thinking steps inside <think>, then the answer (the true one: the
    checks of a training trace are always right)."""
    return f"{OPEN}{SEP.join(steps)}\n{THINK_CLOSE}\n\n{final_step(problem.answer)}"


def probe_cut(steps: list[str], cut: int) -> tuple[str, int]:
    """A training trace's thinking (OPEN + steps) cut after `cut` characters, and what a probe
    there must answer (value_at). `cut` falls at or after the end of the first computed line."""
    text = OPEN + SEP.join(steps)
    value = value_at(text, cut)
    if value is None or cut > len(text):
        raise ValueError(f"cut {cut} is before the first computed line ends or after the thinking")
    return text[:cut], value


def random_probe_cut(steps: list[str], rng: random.Random) -> tuple[str, int]:
    """probe_cut at a random character from the end of the first computed line to the end."""
    text = OPEN + SEP.join(steps)
    first = next(end for step, end in thinking_spans(text) if line_value(step) is not None)
    return probe_cut(steps, rng.randint(first, len(text)))


def thinking_spans(text: str) -> list[tuple[str, int]]:
    """The thinking steps of a response (all of it when it has no </think>), each with the
    offset in `text` where it ends."""
    region = text.split(THINK_CLOSE, 1)[0]
    at = region.index(THINK_OPEN) + len(THINK_OPEN) if THINK_OPEN in region else 0
    spans = []
    for step in split_steps(region[at:]):
        at = region.index(step, at) + len(step)
        spans.append((step, at))
    return spans


def value_at(text: str, cut: int) -> int | None:
    """What a probe after `text[:cut]` should answer: the value of the last thinking line that
    ends at or before `cut` (a computed line's result, or the settling line's value)."""
    values = [v for step, end in thinking_spans(text) if end <= cut and (v := line_value(step)) is not None]
    return values[-1] if values else None


# grading


def response_answer(text: str) -> str | None:
    """The final answer of a response: its boxed value after </think> (None while the thinking
    is unclosed)."""
    _, answer = split_thinking(text)
    return extract_answer(answer) if answer else None


def grade_response(problem: Problem, text: str) -> bool:
    """Whether a whole response (thinking and answer) ends with the right answer."""
    return response_answer(text) == str(problem.answer)


def first_attempt(text: str) -> list[tuple[str, int]]:
    """The first attempt's lines (thinking_spans): the computed lines before the first other line."""
    spans = thinking_spans(text)
    n = next((k for k, (step, _) in enumerate(spans) if not STEP_FORM.fullmatch(step)), len(spans))
    return spans[:n]


def first_attempt_value(text: str) -> int | None:
    """The value the first attempt reached (the answer of thinking cut after it); None if it
    computed nothing."""
    lines = first_attempt(text)
    return line_value(lines[-1][0]) if lines else None


def think_labels(problem: Problem, steps: list[str]) -> list[int | None]:
    """A label per character of the joined steps (one separator between steps, labelled too), as
    arithmetic.digit_labels gives for the demo world. Each run of computed lines (a pass: the
    first attempt, a check) is judged as digit_labels judges an answer, from the question:
    locally, so a line computed right from an earlier wrong value is right. "Wait, let me
    check." is right; a settling line's value and the answer's boxed value are right when they
    are the true answer. A line of any other form is 0 at its separator, and nothing after it
    is labelled (None)."""
    truth, labels, k = str(problem.answer), [], 0
    while k < len(steps):
        if STEP_FORM.fullmatch(steps[k]):
            j = k
            while j < len(steps) and STEP_FORM.fullmatch(steps[j]):
                j += 1
            labels += digit_labels(problem, steps[k:j])
            k = j
            continue
        step = steps[k]
        m = SETTLE_FORM.fullmatch(step) or ANSWER_FORM.fullmatch(step)
        if step != CHECK and m is None:
            labels += [None] * len(step) + [0]
            break
        step_labels = [1] * (len(step) + 1)
        if m is not None:
            group = m.lastindex or 0  # the value: the last group of either form
            written = m[group]
            for i in range(len(written)):
                step_labels[m.start(group) + i] = int(len(written) == len(truth) and written[i] == truth[i])
        labels += step_labels
        k += 1
    return labels + [None] * (sum(len(s) + 1 for s in steps) - len(labels))


def step_verdicts(problem: Problem, steps: list[str]) -> list[bool]:
    """Per step: right when none of its labels (with its separator's) is 0 and some are set."""
    labels, verdicts, at = think_labels(problem, steps), [], 0
    for step in steps:
        span = labels[at : at + len(step) + 1]
        verdicts.append(0 not in span and any(label is not None for label in span))
        at += len(step) + 1
    return verdicts


def within_world(question: str) -> bool:
    """Whether the demo-think model was trained on questions like this one (1 to 4 operations,
    the demo world's operands)."""
    return arithmetic_within_world(question, DIFFICULTY)
