"""The transformers step-tag scorer against a plain re-implementation of the upstream recipe."""

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen2Model

from helpers.prm_inputs import QUESTION, random_steps
from helpers.processes import run_fresh_python
from helpers.tolerances import FLOAT32
from rfprm_tts.demo.tiny import build_tiny_generator, build_tiny_prm
from rfprm_tts.errors import ConfigError, PRMInputTooLongError, PRMLoadError
from rfprm_tts.prm import aggregate, load_prm


def reference_logits(model_dir, input_ids: torch.Tensor) -> torch.Tensor:
    """The PRM's logits computed without the project's model class: transformers' plain
    Qwen2Model body, and the score head (Linear, ReLU, Linear) applied by hand from the
    checkpoint's weights, read by their names."""
    body = Qwen2Model.from_pretrained(model_dir, dtype=torch.float32).eval()
    weights = load_file(str(Path(model_dir) / "model.safetensors"))
    with torch.no_grad():
        hidden = body(input_ids=input_ids).last_hidden_state
        inner = torch.relu(hidden @ weights["score.0.weight"].T + weights["score.0.bias"])
        return inner @ weights["score.2.weight"].T + weights["score.2.bias"]


def upstream_reference(model_dir, question, steps, system_prompt=None):
    """The recipe as the ReasonFlux/Qwen PRM READMEs describe it: one sequence at a time, step
    rewards found by masking probabilities and keeping the non-zero entries (Qwen2.5-Math-PRM's
    card adds a system message)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    input_ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    logits = reference_logits(model_dir, input_ids)
    mask = (input_ids == tokenizer.convert_tokens_to_ids("<extra_0>")).unsqueeze(-1)
    probs = torch.softmax(logits, dim=-1) * mask
    kept = probs[0][probs[0] != 0].view(-1, 2)
    return kept[:, 1].tolist()


def test_scores_match_the_upstream_recipe(tiny_prm_dir):
    scorer = load_prm(str(tiny_prm_dir), batch_size=4)
    rng = random.Random(0)
    trajectories = [random_steps(rng, k) for k in (1, 3, 5, 2, 7)]
    ours = scorer.score(QUESTION, trajectories)
    for steps, got in zip(trajectories, ours):
        want = upstream_reference(tiny_prm_dir, QUESTION, steps)
        assert len(got) == len(steps)
        assert got == pytest.approx(want, abs=FLOAT32)


def test_batched_equals_unbatched_and_order_is_kept(tiny_prm_dir):
    rng = random.Random(1)
    trajectories = [random_steps(rng, rng.randint(1, 8)) for _ in range(9)]
    batched = load_prm(str(tiny_prm_dir), batch_size=4).score(QUESTION, trajectories)
    single = load_prm(str(tiny_prm_dir), batch_size=1).score(QUESTION, trajectories)
    for a, b in zip(batched, single):
        assert a == pytest.approx(b, abs=FLOAT32)


def test_prefix_scores_do_not_change_when_steps_are_appended(tiny_prm_dir):
    scorer = load_prm(str(tiny_prm_dir), incremental=False)
    steps = random_steps(random.Random(2), 6)
    full = scorer.score(QUESTION, [steps])[0]
    for k in range(1, 6):
        assert scorer.score(QUESTION, [steps[:k]])[0] == pytest.approx(full[:k], abs=FLOAT32)


def test_token_count_and_empty_trajectories(tiny_prm_dir):
    scorer = load_prm(str(tiny_prm_dir), incremental=False)
    batch = scorer.score_batch(QUESTION, [["1 + 1 = 2"], [], ["2 + 2 = 4", "4 * 2 = 8"]])
    assert batch.step_scores[1] == []
    expected = sum(len(scorer.encode(QUESTION, s)) for s in (["1 + 1 = 2"], ["2 + 2 = 4", "4 * 2 = 8"]))
    assert batch.tokens == expected
    # A literal step tag inside a step must not create a phantom step.
    assert len(scorer.score(QUESTION, [["a <extra_0> b", "c"]])[0]) == 2


def test_vocab_sized_head_fails_clearly(tmp_path):
    bad = build_tiny_prm(tmp_path / "lm_head_prm", num_labels=107)
    with pytest.raises(PRMLoadError, match="head of 107 outputs"):
        load_prm(str(bad))


def test_causal_lm_checkpoint_is_not_a_prm(tmp_path):
    lm = build_tiny_generator(tmp_path / "lm")
    with pytest.raises(PRMLoadError, match="Qwen2ForCausalLM.*trust_remote_code"):
        load_prm(str(lm))
    # Opting into remote code loads the bare decoder: its hidden states are not 2 labels.
    with pytest.raises(PRMLoadError, match="expected the 2-label PRM head"):
        load_prm(str(lm), trust_remote_code=True)


def test_a_checkpoint_without_its_own_aggregation_leaves_the_choice_to_the_settings(tiny_prm_dir):
    assert load_prm(str(tiny_prm_dir)).aggregation is None


def test_missing_step_tag_and_missing_checkpoint(tmp_path, tiny_prm_dir):
    with pytest.raises(PRMLoadError, match="no '<step>' token"):
        load_prm(str(tiny_prm_dir), step_tag="<step>")
    with pytest.raises(ConfigError, match="prm model .*nowhere.* is a local path that does not exist"):
        load_prm(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PRMLoadError, match="prm model folder .*empty has no config.json"):
        load_prm(str(tmp_path / "empty"))  # a folder, but no checkpoint in it


def test_input_past_the_context_window_is_an_error_of_that_input_alone(tmp_path):
    short = build_tiny_prm(tmp_path / "short", max_position_embeddings=128)
    scorer = load_prm(str(short))
    batch = scorer.score_batch(QUESTION, [["x" * 200], ["1 + 1 = 2", "The answer is 2."]])
    assert batch.step_scores[0] == [None] and "prm.overflow" in batch.errors[0]
    assert batch.errors[1] is None and all(0 < p < 1 for p in batch.step_scores[1])
    assert batch.step_scores[1] == pytest.approx(
        scorer.score(QUESTION, [["1 + 1 = 2", "The answer is 2."]])[0], abs=1e-6
    )


@pytest.mark.parametrize(
    "method, answer_step, expected",
    [
        ("last", False, 0.9),
        ("min", False, 0.2),
        ("mean", False, (0.5 + 0.2 + 0.9) / 3),
        ("prod", False, 0.5 * 0.2 * 0.9),
        ("reasonflux", False, (0.5 + 0.2 + 0.9) / 3 + 2.0 * 0.9),
        ("reasonflux", True, (0.5 + 0.2) / 2 + 2.0 * 0.9),
    ],
)
def test_aggregations(method, answer_step, expected):
    assert aggregate([0.5, 0.2, 0.9], method, alpha=2.0, answer_step=answer_step) == pytest.approx(expected)
    assert aggregate([], method) is None


def test_prm_system_prompt_follows_the_qwen_model_card(tiny_prm_dir):
    """prm.system_prompt puts the card's system message in the PRM input: the scores are the
    reference recipe's with that message, and differ from the default recipe's."""
    card = "Please reason step by step, and put your final answer within \\boxed{}."
    steps = random_steps(random.Random(3), 3)
    got = load_prm(str(tiny_prm_dir), system_prompt=card).score(QUESTION, [steps])[0]
    assert got == pytest.approx(upstream_reference(tiny_prm_dir, QUESTION, steps, system_prompt=card), abs=FLOAT32)
    assert got != pytest.approx(upstream_reference(tiny_prm_dir, QUESTION, steps), abs=1e-3)


def test_unknown_aggregation():
    with pytest.raises(ValueError, match="unknown aggregation 'median'; choose one of last, min"):
        aggregate([0.5], "median")


def plain_token_min(model_dir, question, steps):
    """Token-level read-out by hand: softmax at every token, min over each step's tokens and
    its closing tag, the answer starting after the templated question."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]
    ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    p = torch.softmax(reference_logits(model_dir, torch.tensor([ids]))[0], -1)[:, 1]
    tag = tokenizer.convert_tokens_to_ids("<extra_0>")
    tags = [i for i, t in enumerate(ids) if t == tag]
    bounds = [start] + [t + 1 for t in tags[:-1]]
    return [p[b : t + 1].min().item() for b, t in zip(bounds, tags)]


def test_token_min_readout_is_taken_from_the_checkpoint(tmp_path):
    path = build_tiny_prm(tmp_path / "token_prm", seed=4, head_gain=(5.0, 10.0))  # token_min unsaturated
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "rfprm_readout": "token_min", "rfprm_aggregation": "min"}))
    steps = random_steps(random.Random(5), 4)
    scorer = load_prm(str(path), batch_size=2)
    assert (scorer.format.readout, scorer.aggregation) == ("token_min", "min")
    # the remote backend reads the same choices from the checkpoint (no server needed to build it)
    remote = load_prm(str(path), backend="http", base_url="http://127.0.0.1:9")
    assert (remote.format.readout, remote.aggregation) == ("token_min", "min")
    batch = scorer.score(QUESTION, [steps, steps[:2], steps[:1]])
    want = plain_token_min(path, QUESTION, steps)
    assert batch[0] == pytest.approx(want, abs=FLOAT32)
    assert batch[1] == pytest.approx(want[:2], abs=FLOAT32)  # still causal: prefixes keep their scores
    forced = load_prm(str(path), readout="step_tag").score(QUESTION, [steps])[0]
    assert forced == pytest.approx(upstream_reference(path, QUESTION, steps), abs=FLOAT32)


def test_reasonflux_1_5b_format(tmp_path):
    """Causal LM + reward_head.pt: raw question + completion, sigmoid(head(last hidden state))."""
    from transformers import AutoModelForCausalLM

    path = build_tiny_generator(tmp_path / "rf15", seed=6)
    torch.manual_seed(7)
    head = torch.nn.Linear(64, 1)
    torch.save(head.state_dict(), path / "reward_head.pt")

    scorer = load_prm(str(path), batch_size=2)
    trajectories = [random_steps(random.Random(k), k) for k in (1, 3, 2)]
    got = scorer.score_batch(QUESTION, trajectories)

    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    for steps, scores in zip(trajectories, got.step_scores):
        ids = tokenizer(QUESTION + "\n\n".join(steps), return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            last = lm(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
            want = torch.sigmoid(head(last)).item()
        assert scores == pytest.approx([want], abs=FLOAT32)

    (path / "reward_head.pt").unlink()
    torch.save({"weight": torch.zeros(3, 64)}, path / "reward_head.pt")
    with pytest.raises(PRMLoadError, match="not a Linear\\(64, 1\\) reward head"):
        load_prm(str(path))
    with pytest.raises(PRMLoadError, match="Qwen2ForCausalLM"):
        load_prm(str(path), format="step_tag")  # forced step-tag: a causal LM is no such PRM


def test_a_solve_goes_on_when_one_candidate_outgrows_the_prm(tmp_path):
    """prm.overflow="error": the overlong candidate fails alone (its reason kept); the solve
    raises only when no candidate can be scored."""
    from helpers.fakes import ListGenerator
    from rfprm_tts import ReasoningSolver, Settings

    scorer = load_prm(str(build_tiny_prm(tmp_path / "short", max_position_embeddings=128)))
    long_answer = "\n\n".join(["1 + 1 = 2"] * 40) + "\n\n\\boxed{2}"
    settings = Settings.load(n=2, prm={"aggregation": "min"})
    result = ReasoningSolver(settings, generator=ListGenerator([long_answer, "\\boxed{3}"]), scorer=scorer).solve(
        QUESTION
    )
    assert result.answer == "3" and result.best.ok
    failed = [c for c in result.candidates if not c.ok]
    assert len(failed) == 1 and "PRM could not score it" in failed[0].error and "prm.overflow" in failed[0].prm_note
    with pytest.raises(PRMInputTooLongError, match="no candidate could be scored"):
        ReasoningSolver(settings, generator=ListGenerator([long_answer]), scorer=scorer).solve(QUESTION)


# -- a verifier format added in one file ------------------------------------------------------


class NewlineFormat:
    """A toy format, defined here only: the raw question, then each step followed by "\\n";
    a step's score is P(class 1) at its newline. Nothing outside this test knows it."""

    rows = "tags"
    one_score = False
    prefix_reuse = True

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        (self.tag_id,) = tokenizer("\n", add_special_tokens=False)["input_ids"]

    def encode(self, question, steps):
        text = question + " " + "".join(step.replace("\n", " ") + "\n" for step in steps)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def answer_start(self, question):
        return len(self.tokenizer(question + " ", add_special_tokens=False)["input_ids"])

    def read(self, rows, ids, start):
        return [p[1] for p in rows]

    def cuts(self, ids, start):
        return [start] + [p + 1 for p in range(start, len(ids)) if ids[p] == self.tag_id]


def test_a_new_format_is_one_registration(tiny_prm_dir):
    from rfprm_tts.prm import FormatSpec, register_format
    from rfprm_tts.prm.formats.step_tag import _load_model
    from rfprm_tts.prm.registry import FORMATS

    register_format(
        FormatSpec("toy_newline", lambda settings, path, config, tokenizer: NewlineFormat(tokenizer), _load_model)
    )
    try:
        trajectories = [random_steps(random.Random(k), k) for k in (1, 3, 2)]
        full = load_prm(str(tiny_prm_dir), format="toy_newline", incremental=False).score(QUESTION, trajectories)
        incremental = load_prm(str(tiny_prm_dir), format="toy_newline")
        incremental.score(QUESTION, [t[:1] for t in trajectories])  # prefixes first, then the whole
        assert incremental.score(QUESTION, trajectories) == [pytest.approx(f, abs=FLOAT32) for f in full]
        tokenizer = AutoTokenizer.from_pretrained(tiny_prm_dir)
        for steps, got in zip(trajectories, full):
            ids = NewlineFormat(tokenizer).encode(QUESTION, steps)
            probs = torch.softmax(reference_logits(tiny_prm_dir, torch.tensor([ids]))[0], -1)[:, 1]
            start = NewlineFormat(tokenizer).answer_start(QUESTION)
            newline = NewlineFormat(tokenizer).tag_id
            want = [probs[p].item() for p in range(start, len(ids)) if ids[p] == newline]
            assert got == pytest.approx(want, abs=FLOAT32) and len(got) == len(steps)
    finally:
        FORMATS.pop("toy_newline")
    with pytest.raises(
        ConfigError, match="unknown prm.format 'toy_newline'; registered formats: math_shepherd, .*step_tag"
    ):
        load_prm(str(tiny_prm_dir), format="toy_newline")


def test_every_scorer_follows_the_protocol(tiny_prm_dir):
    from helpers.fakes import DigitScorer
    from rfprm_tts.prm import Scorer
    from rfprm_tts.serve.batching import BatchingScorer

    prm = load_prm(str(tiny_prm_dir))
    batching = BatchingScorer(prm)
    for scorer in (prm, batching, DigitScorer()):
        assert isinstance(scorer, Scorer)
    # the wrapper passes every capability on
    assert (batching.aggregation, batching.num_parameters, batching.prefix_cache) == (
        prm.aggregation,
        prm.num_parameters,
        prm.prefix_cache,
    ) and prm.prefix_cache is prm
    assert batching.describe() == {"format": "step_tag", "readout": "step_tag", "runner": "IncrementalRunner"}
    assert load_prm(str(tiny_prm_dir), incremental=False).prefix_cache is None
    batching.close()


def test_the_pure_parts_import_without_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from rfprm_tts.prm import aggregate, AGGREGATIONS, ScoredBatch, Scorer, ScorerDefaults, PRMScorer\n"
        "from rfprm_tts.prm.formats.step_tag import StepTagFormat, token_min_scores\n"
        "assert aggregate([0.5, 0.2], 'min') == 0.2\n"
        "try:\n"
        "    from rfprm_tts.prm import load_prm; load_prm('demo')\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('loading a model should have needed torch')\n"
    )
    run_fresh_python(code, timeout=120)
