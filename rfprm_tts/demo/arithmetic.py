"""The demo world's task: multi-step integer arithmetic with exact, step-level grading.

    Compute 7 + 5 * 3 - 4.
    5 * 3 = 15

    7 + 15 = 22

    22 - 4 = 18

    The answer is \\boxed{18}.

One operation per step: multiplications first (any of them), then additions and
subtractions from the left. A step is correct when its operation is one the current state
allows and its result is right; the state then advances. Grading a sampled solution gives,
for every character, whether the text so far can still be extended to a correct solution:
the labels the demo PRM is trained on.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from rfprm_tts.text import DEFAULT_STEP_SEPARATOR, extract_answer

STEP_RE = re.compile(r"^(-?\d+) ([-+*]) (-?\d+) = (-?\d+)$")


@dataclass(frozen=True)
class Difficulty:
    """Which problems a task draws: operation count, operand range, share of '*'."""

    min_ops: int = 2
    max_ops: int = 4
    max_operand: int = 30
    mul_share: float = 0.3
    max_multiplier: int = 9
    non_negative: bool = True  # redraw problems whose solution passes through a negative value


@dataclass(frozen=True)
class Problem:
    numbers: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def question(self) -> str:
        parts = [str(self.numbers[0])]
        for op, number in zip(self.ops, self.numbers[1:]):
            parts += [op, str(number)]
        return f"Compute {' '.join(parts)}."

    @property
    def answer(self) -> int:
        return self.intermediate_values()[-1]

    def intermediate_values(self) -> list[int]:
        """The result of every step of the canonical solution."""
        values, state = [], (list(self.numbers), list(self.ops))
        while state[1]:
            i = canonical_index(state[1])
            state = apply(state, i)
            values.append(state[0][i])
        return values

    def solution(self, separator: str = DEFAULT_STEP_SEPARATOR) -> str:
        steps, state = [], (list(self.numbers), list(self.ops))
        while state[1]:
            i = canonical_index(state[1])
            a, op, b = state[0][i], state[1][i], state[0][i + 1]
            state = apply(state, i)
            steps.append(f"{a} {op} {b} = {state[0][i]}")
        steps.append(final_step(state[0][0]))
        return separator.join(steps)


def final_step(value: int) -> str:
    return f"The answer is \\boxed{{{value}}}."


def canonical_index(ops: list[str]) -> int:
    return ops.index("*") if "*" in ops else 0


def allowed_indices(ops: list[str]) -> list[int]:
    """Operations the state allows next: any '*', else only the leftmost + or -."""
    muls = [i for i, op in enumerate(ops) if op == "*"]
    return muls or ([0] if ops else [])


def evaluate(a: int, op: str, b: int) -> int:
    return a * b if op == "*" else a + b if op == "+" else a - b


def apply(state: tuple[list[int], list[str]], i: int, value: int | None = None) -> tuple[list[int], list[str]]:
    """The state after operation i, whose result is `value` as written (default: the true one)."""
    numbers, ops = state
    if value is None:
        value = evaluate(numbers[i], ops[i], numbers[i + 1])
    return [*numbers[:i], value, *numbers[i + 2 :]], ops[:i] + ops[i + 1 :]


def sample_problem(rng: random.Random, difficulty: Difficulty = Difficulty()) -> Problem:
    d = difficulty
    while True:
        n_ops = rng.randint(d.min_ops, d.max_ops)
        ops = tuple("*" if rng.random() < d.mul_share else rng.choice("+-") for _ in range(n_ops))
        numbers = [rng.randint(1, d.max_operand)]
        for op in ops:
            numbers.append(rng.randint(2, d.max_multiplier) if op == "*" else rng.randint(1, d.max_operand))
        problem = Problem(tuple(numbers), ops)
        if not d.non_negative or min(problem.intermediate_values()) >= 0:
            return problem


def distinct_problems(rng: random.Random, count: int, difficulty: Difficulty, exclude: set[str]) -> list[Problem]:
    """`count` distinct problems whose questions are not in `exclude` (which gains them)."""
    problems: list[Problem] = []
    while len(problems) < count:
        p = sample_problem(rng, difficulty)
        if p.question not in exclude:
            exclude.add(p.question)
            problems.append(p)
    return problems


def held_out_problems(count: int = 200, seed: int = 1234, difficulty: Difficulty = Difficulty()) -> list[Problem]:
    """The fixed test set (distinct problems). Training never draws these."""
    return distinct_problems(random.Random(seed), count, difficulty, set())


def fresh_problems(
    count: int = 200,
    seed: int = 20261128,
    difficulty: Difficulty = Difficulty(),
    train_seed: int = 0,
    training_draws: tuple[int, int] = (96 + 4000 * 32, 1500),
) -> list[Problem]:
    """A second test set, made after every recipe and setting of the shipped world was chosen
    on held_out_problems: never used for any choice, and to be kept so (measure on it, never
    tune on it). Disjoint from the held-out set and from every problem the training streams
    drew (the language-model stream, seed `train_seed`, and the PRM stream, `train_seed` + 1,
    replayed for as many draws as the default training makes). Short problems are the likeliest
    to have been drawn in training, so this set leans to longer ones (see the report)."""
    held_out = {p.question for p in held_out_problems(difficulty=difficulty)}
    seen = set(held_out)
    for stream_seed, draws in zip((train_seed, train_seed + 1), training_draws):
        rng, drawn = random.Random(stream_seed), 0
        while drawn < draws:
            p = sample_problem(rng, difficulty)
            if p.question not in held_out:  # as the training streams do (demo/train.py)
                seen.add(p.question)
                drawn += 1
    return distinct_problems(random.Random(seed), count, difficulty, seen)


def fitting_problems(count: int = 200, seed: int = 4242, difficulty: Difficulty = Difficulty()) -> list[Problem]:
    """Problems to fit a choice on (a learned aggregation, a threshold): disjoint from the
    held-out and fresh test sets, so what is fitted here is measured on problems it never saw."""
    tests = {p.question for p in held_out_problems(difficulty=difficulty) + fresh_problems(difficulty=difficulty)}
    return distinct_problems(random.Random(seed), count, difficulty, tests)


@dataclass
class Grade:
    """Step verdicts of a response (prefix semantics: after the first error every step is
    wrong), the character offset of the first error in the joined steps (None if none), and
    whether the final answer is right."""

    step_correct: list[bool]
    first_error_char: int | None
    answer_correct: bool


def correct_next_steps(state: tuple[list[int], list[str]]) -> dict[str, tuple[list[int], list[str]] | None]:
    """Every correct next step text, with the state it leads to (None after the answer)."""
    numbers, ops = state
    if not ops:
        return {final_step(numbers[0]): None}
    options: dict[str, tuple[list[int], list[str]] | None] = {}
    for i in allowed_indices(ops):
        nxt = apply(state, i)
        options[f"{numbers[i]} {ops[i]} {numbers[i + 1]} = {nxt[0][i]}"] = nxt
    return options


def grade(problem: Problem, steps: list[str]) -> Grade:
    """Grade a response already cut into steps. Offsets count characters of the steps with
    one separator character between steps (the PRM input joins steps with one step tag)."""
    state: tuple[list[int], list[str]] | None = (list(problem.numbers), list(problem.ops))
    verdicts: list[bool] = []
    offset = 0
    first_error: int | None = None
    for step in steps:
        if first_error is None:
            options = correct_next_steps(state) if state is not None else {}
            if step in options:
                state = options[step]
                verdicts.append(True)
            else:
                first_error = offset + deviation(step, list(options))
                verdicts.append(False)
        else:
            verdicts.append(False)
        offset += len(step) + 1
    ok = first_error is None and state is None and verdicts == [True] * len(steps)
    answer = extract_answer("\n\n".join(steps))
    return Grade(verdicts, first_error, ok and answer == str(problem.answer))


def deviation(step: str, options: list[str]) -> int:
    """Where a wrong step leaves every correct option: the length of the longest common prefix
    (equal to len(step) when the step stops short, so the error is the step's end)."""
    best = 0
    for option in options:
        n = 0
        while n < min(len(step), len(option)) and step[n] == option[n]:
            n += 1
        best = max(best, n)
    return best


STEP_FORM = re.compile(r"(-?\d+) ([+*-]) (-?\d+) = (-?\d+)")
ANSWER_FORM = re.compile(r"The answer is \\boxed\{(-?\d+)\}\.")  # final_step's form


def digit_labels(problem: Problem, steps: list[str]) -> list[int | None]:
    """A label per character of the joined steps (one separator between steps, labelled too):
    each digit of a step's operands is right (1) when the operation is one the state written
    so far allows, each digit of its result when it matches the true result of the operation
    as written; other characters are 1 in a well-formed step. A malformed step is 0 at its
    separator, and nothing after it is labelled (None). Errors are judged locally: a step
    computed correctly from an earlier wrong number is right, so a trajectory's first error
    is where its labels first drop to 0."""
    numbers, ops = list(problem.numbers), list(problem.ops)
    labels: list[int | None] = []
    for step in steps:
        m = STEP_FORM.fullmatch(step)
        if m and ops:
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            at = next((i for i in allowed_indices(ops) if (numbers[i], ops[i], numbers[i + 1]) == (a, op, b)), None)
            true = str(evaluate(a, op, b))
            step_labels = [1] * len(step)
            for g in (1, 2, 3):
                for k in range(m.start(g), m.end(g)):
                    step_labels[k] = 1 if at is not None else 0
            written = m[4]
            for k in range(len(written)):
                right = len(written) == len(true) and written[k] == true[k]
                step_labels[m.start(4) + k] = 1 if right else 0
            labels += [*step_labels, 1]
            if at is None:
                break
            numbers, ops = apply((numbers, ops), at, c)
            continue
        final = ANSWER_FORM.fullmatch(step)
        if final and not ops:
            step_labels = [1] * len(step)
            for k in range(final.start(1), final.end(1)):
                step_labels[k] = 1 if final[1] == str(numbers[0]) else 0
            labels += [*step_labels, 1]
            continue
        labels += [None] * len(step) + [0]  # malformed, or not the step the state calls for
        break
    return labels + [None] * (sum(len(x) + 1 for x in steps) - len(labels))


def digit_slip(steps: list[str], rng: random.Random) -> list[str] | None:
    """The answer cut after a random arithmetic step whose result has one digit changed: the
    generator's commonest mistake, made on demand (None when no step computes anything)."""
    computed = [(k, m) for k, step in enumerate(steps) if (m := STEP_FORM.fullmatch(step))]
    if not computed:
        return None
    k, m = rng.choice(computed)
    start, end = m.span(4)
    start += steps[k][start] == "-"
    at = rng.randrange(start, end)
    digits = [d for d in "0123456789" if d != steps[k][at] and not (d == "0" and at == start and end - start > 1)]
    return [*steps[:k], steps[k][:at] + rng.choice(digits) + steps[k][at + 1 :]]


def parse_question(question: str) -> Problem | None:
    """The Problem behind a question of this task's form, or None."""
    m = re.fullmatch(r"Compute (.+)\.", question.strip())
    if not m:
        return None
    tokens = m.group(1).split()
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        return None
    try:
        numbers = tuple(int(t) for t in tokens[::2])
    except ValueError:
        return None
    ops = tuple(tokens[1::2])
    if any(op not in "+-*" for op in ops):
        return None
    return Problem(numbers, ops)


def within_world(question: str, difficulty: Difficulty = Difficulty()) -> bool:
    """Whether the demo model was trained on questions like this one: the task's form, with the
    operation count and operands of its difficulty (it cannot do "Compute 1 + 2.")."""
    problem = parse_question(question)
    return (
        problem is not None
        and difficulty.min_ops <= len(problem.ops) <= difficulty.max_ops
        and all(0 <= n <= difficulty.max_operand for n in problem.numbers)
    )
