"""The demo-think world (rfprm_tts.demo.thinking, train_think, quality_think): its traces cut into
steps as any <think> response does, grading and PRM labels on hand-written traces, probe
examples that teach answering without teaching to stop thinking, and the smoke training run."""

import json
import operator
import random
import re
import statistics

import pytest
from transformers import AutoTokenizer

from rfprm_tts.demo import paths
from rfprm_tts.demo.arithmetic import STEP_FORM, parse_question, sample_problem
from rfprm_tts.demo.arithmetic import within_world as demo_within_world
from rfprm_tts.demo.thinking import (
    DIFFICULTY,
    first_attempt_value,
    grade_response,
    probe_cut,
    response_answer,
    response_text,
    step_verdicts,
    think_labels,
    thinking_steps,
    within_world,
)
from rfprm_tts.demo.train import main as train_main
from rfprm_tts.demo.train_think import ThinkConfig, lm_batch, lm_example
from rfprm_tts.errors import ConfigError
from rfprm_tts.trajectory import Trajectory

QUESTION = "Compute 7 + 5 * 3 - 4."
RIGHT = ["5 * 3 = 15", "7 + 15 = 22", "22 - 4 = 18"]
SLIPPED = ["5 * 3 = 16", "7 + 16 = 23", "23 - 4 = 19"]  # one digit changed, computed on from it
CHECK = "Wait, let me check."
ANSWER_18, ANSWER_19 = "The answer is \\boxed{18}.", "The answer is \\boxed{19}."


def response(thinking: list[str], answer: str) -> str:
    return "<think>\n" + "\n\n".join(thinking) + "\n</think>\n\n" + answer


FIXED = [*SLIPPED, CHECK, *RIGHT, "I had 19 before; it is 18."]  # the check finds the slip
NOT_FIXED = [*SLIPPED, CHECK, *SLIPPED, "So it is 19."]  # the check repeats it
CORRECT = [*RIGHT, CHECK, *RIGHT, "So it is 18."]


def zeros(steps: list[str]) -> list[int]:
    return [i for i, label in enumerate(think_labels(parse_question(QUESTION), steps)) if label == 0]


def offsets(steps: list[str], step: int, text: str) -> list[int]:
    """Where `text` sits (every character) in step `step` of the steps joined with one character."""
    start = sum(len(s) + 1 for s in steps[:step]) + steps[step].index(text)
    return list(range(start, start + len(text)))


def test_a_trace_is_the_thinking_then_the_demo_answer_and_cuts_into_its_steps():
    problem = parse_question(QUESTION)
    steps = thinking_steps(problem)  # no rng: no slip; 3 operations get two check passes
    assert steps == [*RIGHT, CHECK, *RIGHT, CHECK, *RIGHT, "So it is 18."]
    text = response_text(problem, steps)
    assert text == response([*RIGHT, CHECK, *RIGHT, CHECK, *RIGHT, "So it is 18."], ANSWER_18)
    trajectory = Trajectory.from_response(QUESTION, text)
    assert trajectory.step_texts == [*steps, ANSWER_18]
    assert [s.part for s in trajectory.steps] == ["thinking"] * len(steps) + ["answer"]
    assert trajectory.answer == "18"
    one = parse_question("Compute 1 + 2.")
    assert thinking_steps(one) == ["1 + 2 = 3", CHECK, "1 + 2 = 3", "So it is 3."]


def test_sampled_traces_round_trip_slip_as_asked_and_think_longer_on_harder_problems():
    rng, slipped, lengths = random.Random(0), 0, {n: [] for n in range(1, 5)}
    for _ in range(2000):
        problem = sample_problem(rng, DIFFICULTY)
        steps = thinking_steps(problem, rng, slip_rate=0.35)
        text = response_text(problem, steps)
        trajectory = Trajectory.from_response(problem.question, text)
        assert trajectory.step_texts[:-1] == steps and trajectory.answer == str(problem.answer)
        attempt = steps[: steps.index(CHECK)]
        for line in attempt:  # every line computes right from what it reads, but one digit may slip
            a, op, b, c = STEP_FORM.fullmatch(line).groups()
            slipped += int(c) != {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](int(a), int(b))
        checks = [steps[i + 1 : i + 1 + len(problem.ops)] for i, s in enumerate(steps) if s == CHECK]
        assert all(c == problem.solution().split("\n\n")[:-1] for c in checks)  # checks are always right
        lengths[len(problem.ops)].append(len(text.split("</think>")[0]) / len(text.split("</think>\n\n")[1]))
    assert 0.31 <= slipped / 2000 <= 0.39  # one slipped line in about 35% of the traces
    means = [statistics.mean(lengths[n]) for n in range(1, 5)]
    assert means == sorted(means) and means[0] > 2.5 and means[-1] < 20


def test_grading_and_labels_of_a_slip_the_check_fixes():
    problem = parse_question(QUESTION)
    text = response(FIXED, ANSWER_18)
    steps = Trajectory.from_response(QUESTION, text).step_texts
    assert grade_response(problem, text) and response_answer(text) == "18"
    assert first_attempt_value(text) == 19  # cut after the first attempt, it would answer 19
    assert zeros(steps) == offsets(steps, 0, "6")  # only the slipped digit; later lines compute right
    assert step_verdicts(problem, steps) == [False] + [True] * (len(steps) - 1)


def test_grading_and_labels_of_a_slip_the_check_misses():
    problem = parse_question(QUESTION)
    text = response(NOT_FIXED, ANSWER_19)
    steps = Trajectory.from_response(QUESTION, text).step_texts
    assert not grade_response(problem, text) and first_attempt_value(text) == 19
    settle, answer = len(steps) - 2, len(steps) - 1
    # each pass is judged from the question: the check's "16" is wrong again; 19 is not 18
    expected = offsets(steps, 0, "6") + offsets(steps, 4, "6")
    expected += [offsets(steps, settle, "19")[1], offsets(steps, answer, "19")[1]]
    assert zeros(steps) == expected
    assert step_verdicts(problem, steps) == [False, True, True, True, False, True, True, False, False]


def test_grading_and_labels_of_a_correct_trace():
    problem = parse_question(QUESTION)
    text = response(CORRECT, ANSWER_18)
    steps = Trajectory.from_response(QUESTION, text).step_texts
    labels = think_labels(problem, steps)
    assert grade_response(problem, text) and first_attempt_value(text) == 18
    assert len(labels) == sum(len(s) + 1 for s in steps) and set(labels) == {1}
    assert not grade_response(problem, response(CORRECT, ANSWER_19))
    assert response_answer(response(CORRECT, "")[: -len("</think>\n\n")]) is None  # still thinking


def test_labels_of_an_order_error_and_of_a_malformed_line():
    steps = ["7 + 5 = 12", "12 * 3 = 36", CHECK, *RIGHT, "So it is 18."]
    labels = think_labels(parse_question(QUESTION), steps)
    # 7 + 5 before 5 * 3: its operand digits are wrong; the rest of that pass is not judged; the
    # check pass starts again from the question and is right
    assert zeros(steps) == offsets(steps, 0, "7") + offsets(steps, 0, "+") + offsets(steps, 0, "5")
    assert set(labels[offsets(steps, 1, "12 * 3 = 36")[0] :][:11]) == {None}
    assert set(labels[offsets(steps, 2, CHECK)[0] :]) == {1}
    odd = [*RIGHT, "Wait, let me chek.", *RIGHT]
    labels = think_labels(parse_question(QUESTION), odd)
    assert zeros(odd) == [offsets(odd, 3, "Wait, let me chek.")[-1] + 1]  # a malformed line fails at its tag
    assert set(labels[zeros(odd)[0] + 1 :]) == {None}


def test_a_probe_answers_the_last_value_the_cut_thinking_completed():
    thinking = "<think>\n" + "\n\n".join(FIXED)
    mid_second_line = thinking.index("7 + 16 = 2") + len("7 + 16 = 2")
    assert probe_cut(FIXED, mid_second_line) == (thinking[:mid_second_line], 16)
    after_check = thinking.index(CHECK) + len(CHECK)
    assert probe_cut(FIXED, after_check)[1] == 19  # the first attempt's value
    assert probe_cut(FIXED, thinking.index("22 - 4 = 18") + len("22 - 4 = 18"))[1] == 18
    assert probe_cut(FIXED, len(thinking)) == (thinking, 18)  # the settling line
    with pytest.raises(ValueError):
        probe_cut(FIXED, len("<think>\n5 * 3 = 1"))  # before the first line is whole


@pytest.fixture(scope="module")
def tokenizer():
    from rfprm_tts.demo.tiny import build_tokenizer
    from rfprm_tts.demo.train import SYSTEM_PROMPT

    return build_tokenizer(SYSTEM_PROMPT)


def test_probe_examples_put_no_loss_on_the_close(tokenizer):
    cfg, rng = ThinkConfig(probe_share=1.0), random.Random(0)
    for _ in range(50):
        problem = sample_problem(rng, DIFFICULTY)
        ids, labels = lm_example(tokenizer, problem, rng, cfg)
        first = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label != -100 for label in labels[first:]) and labels[first:] == ids[first:]
        learned, context = tokenizer.decode(ids[first:]), tokenizer.decode(ids[:first])
        value = re.fullmatch(r"The answer is \\boxed\{(-?\d+)\}\.<\|im_end\|>", learned)[1]
        assert context.endswith("</think>\n\n") and "</think>" not in learned
        thinking = context.split("<|im_start|>assistant\n")[1].removesuffix("</think>\n\n").rstrip("\n")
        assert re.search(rf"(= |it is ){value}\b", thinking)  # a value the cut thinking reached
    cfg = ThinkConfig(probe_share=0.0)
    ids, labels = lm_example(tokenizer, parse_question(QUESTION), random.Random(1), cfg)
    first = next(i for i, label in enumerate(labels) if label != -100)
    learned = tokenizer.decode(ids[first:])
    assert learned.startswith("<think>\n5 * 3 = ") and learned.endswith(f"{ANSWER_18}<|im_end|>")
    batch = lm_batch(tokenizer, [parse_question("Compute 1 + 2."), parse_question(QUESTION)], random.Random(2), cfg)
    short = batch["attention_mask"][0]
    assert not short.all() and (batch["input_ids"][0][~short] == tokenizer.pad_token_id).all()
    assert (batch["labels"][0][~short] == -100).all() and batch["attention_mask"][1].all()


def test_within_world_takes_one_to_four_operations():
    assert within_world("Compute 1 + 2.") and not demo_within_world("Compute 1 + 2.")
    assert within_world("Compute 3 + 4 * 2.") and within_world("Compute 1 + 2 + 3 + 4 + 5.")
    assert not within_world("Compute 1 + 2 + 3 + 4 + 5 + 6.") and not within_world("Compute 31 + 2.")
    assert not within_world("What is 1 + 2?")


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("think") / "world"
    train_main(["--world", "think", "--smoke", "--out", str(out)])
    return out


def test_smoke_run_writes_loadable_models_and_a_report(smoke_world):
    import asyncio

    from rfprm_tts.generators import GenerationRequest
    from rfprm_tts.generators.transformers import TransformersGenerator
    from rfprm_tts.prm import load_prm
    from rfprm_tts.settings import GeneratorSettings

    generator = TransformersGenerator(
        GeneratorSettings(model=str(smoke_world / "generator"), device="cpu", max_tokens=8)
    )
    result = asyncio.run(generator.generate(GenerationRequest(QUESTION, n=2)))
    assert len(result.completions) == 2 and result.generated_tokens > 0
    steps = Trajectory.from_response(QUESTION, response(FIXED, ANSWER_18)).step_texts
    scores = load_prm(str(smoke_world / "prm"), device="cpu").score(QUESTION, [steps])[0]
    assert len(scores) == len(steps) and all(0.0 <= s <= 1.0 for s in scores)
    report = json.loads((smoke_world / "report.json").read_text())
    assert report["train_config"]["difficulty"]["min_ops"] == 1 and "slip_rate" in report["train_config"]
    for key in ("greedy_accuracy", "majority@2", "first_attempt_pass@1", "thinking_tokens", "probe_settled"):
        assert key in report


def test_demo_think_resolves_to_its_own_weights(smoke_world, monkeypatch):
    from rfprm_tts.prm import load_prm

    monkeypatch.setattr(paths, "WEIGHTS_THINK_DIR", smoke_world)
    assert load_prm("demo-think", device="cpu").score("Compute 1 + 2.", [["1 + 2 = 3"]])[0]
    tokenizer = AutoTokenizer.from_pretrained(paths.think_model_path("generator"))
    assert tokenizer.convert_tokens_to_ids("</think>") != tokenizer.unk_token_id
    monkeypatch.setattr(paths, "WEIGHTS_THINK_DIR", smoke_world / "missing")
    with pytest.raises(ConfigError, match=r"rebuild it with `python -m rfprm_tts.demo.train --world think --out"):
        load_prm("demo-think")


def test_the_report_measures_thinking_on_given_responses(smoke_world, tokenizer):
    from transformers import AutoModelForCausalLM

    from rfprm_tts.demo.quality_think import thinking_report

    model = AutoModelForCausalLM.from_pretrained(smoke_world / "generator").eval()
    problem = parse_question(QUESTION)
    fixed, correct = response(FIXED, ANSWER_18), response(CORRECT, ANSWER_18)
    report = thinking_report(model, tokenizer, [problem, problem], [[fixed], [correct]], [[fixed, correct], [correct]])
    assert report["first_attempt_greedy_accuracy"] == 0.5 and report["first_attempt_pass@1"] == pytest.approx(2 / 3)
    assert report["probed_responses"] == 2 and report["probed_full_thinking_accuracy"] == 1.0

    def thinking_tokens(text):  # a token a character, and one each tag
        return len(text.split("</think>")[0]) - len("<think>") + 2

    assert report["thinking_tokens"] == pytest.approx(statistics.mean(map(thinking_tokens, [fixed, correct, correct])))
    assert report["answer_tokens"] == len(ANSWER_18) and report["closed_thinking"] == 1.0
    for key in ("probe_after_first_attempt_accuracy", "probe_settled", "probe_follows_thinking"):
        assert 0.0 <= report[key] <= 1.0
