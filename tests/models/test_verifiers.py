"""The other verifier formats (Math-Shepherd, RLHFlow, Skywork-o1-Open-PRM, outcome reward
models): each on a tiny checkpoint built here with the real architecture class and weight
names, scored by our scorer and by a plain re-implementation of its model card's recipe (one
sequence at a time), in float32."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
    Qwen2Model,
)

from helpers.tolerances import FLOAT32
from rfprm_tts.demo.tiny import build_tokenizer
from rfprm_tts.errors import ConfigError
from rfprm_tts.prm import load_prm

QUESTION = "Tom has 3 apples and buys 4 more. How many now?"
TRAJECTORIES = [
    ["Step 1: 3 + 4 = 7.", "The answer is 7."],
    ["Step 1: 3 + 4 = 8.", "Step 2: so he has 8.", "The answer is 8."],
    ["He counts them.\nThere are 7.", "The answer is 7."],  # a step with a line break of its own
    ["7"],
]
SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)

LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def spread_(weight: torch.Tensor, gain: float) -> None:
    """Scale a random head so scores spread over (0, 1): at init every score is 0.5 +- 0.01,
    and a broken scoring path could hide in rounding."""
    with torch.no_grad():
        weight.mul_(gain)


def save_causal_lm(path, model_class, config_class, tokenizer, seed: int):
    """A random causal LM of the real class, its head spread like a trained verifier's."""
    torch.manual_seed(seed)
    model = model_class(
        config_class(
            vocab_size=len(tokenizer), tie_word_embeddings=False, architectures=[model_class.__name__], **SHAPE
        )
    )
    spread_(model.lm_head.weight, 10.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def math_shepherd_dir(tmp_path_factory):
    """math-shepherd-mistral-7b-prm's layout: MistralForCausalLM, a tokenizer that puts BOS
    first and knows "ки"."""
    tokenizer = build_tokenizer(special=["<s>"], plain=["ки"], bos_token="<s>")
    return save_causal_lm(tmp_path_factory.mktemp("math_shepherd"), MistralForCausalLM, MistralConfig, tokenizer, 1)


@pytest.fixture(scope="module")
def rlhflow_dir(tmp_path_factory):
    """RLHFlow's Llama-3.1 PRM layout: LlamaForCausalLM, Llama 3's turn tokens and template."""
    tokenizer = build_tokenizer(special=LLAMA3_SPECIAL, bos_token="<|begin_of_text|>", chat_template=LLAMA3_TEMPLATE)
    return save_causal_lm(tmp_path_factory.mktemp("rlhflow"), LlamaForCausalLM, LlamaConfig, tokenizer, 2)


@pytest.fixture(scope="module")
def skywork_dir(tmp_path_factory):
    """Skywork-o1-Open-PRM's layout: architecture Qwen2ForPrmModel, the decoder under model.*,
    an (unused) lm_head, and the value head at v_head.summary.*."""
    path = tmp_path_factory.mktemp("skywork")
    tokenizer = build_tokenizer()
    tokenizer.bos_token = "<|endoftext|>"
    torch.manual_seed(3)
    config = Qwen2Config(
        vocab_size=len(tokenizer), tie_word_embeddings=False, architectures=["Qwen2ForPrmModel"], **SHAPE
    )
    lm = Qwen2ForCausalLM(config)
    weights = {k: v.contiguous() for k, v in lm.state_dict().items()}
    weights["v_head.summary.weight"] = torch.randn(1, SHAPE["hidden_size"]) * 2.0
    weights["v_head.summary.bias"] = torch.tensor([0.1])
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def outcome_dir(tmp_path_factory):
    """An outcome reward model: Qwen2ForSequenceClassification with one label."""
    path = tmp_path_factory.mktemp("outcome")
    tokenizer = build_tokenizer()
    torch.manual_seed(4)
    model = Qwen2ForSequenceClassification(
        Qwen2Config(
            vocab_size=len(tokenizer),
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
            architectures=["Qwen2ForSequenceClassification"],
            **SHAPE,
        )
    )
    spread_(model.score.weight, 40.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# Plain re-implementations of each model card's recipe, one sequence at a time.


@torch.inference_mode()
def math_shepherd_card(path, question: str, steps: list[str]) -> list[float]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    candidate_tokens = [tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]]
    step_tag_id = tokenizer.encode("ки")[-1]
    output = "\n".join(f"{step} ки" for step in steps)
    input_id = torch.tensor([tokenizer.encode(f"{question} {output}")])
    logits = model(input_id).logits[:, :, candidate_tokens]
    scores = logits.softmax(dim=-1)[:, :, 0]
    return scores[input_id == step_tag_id].tolist()


@torch.inference_mode()
def rlhflow_card(path, question: str, steps: list[str]) -> list[float]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    candidate_tokens = [tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]]
    conversation, scores = [], []
    for k, step in enumerate(steps):
        conversation.append({"content": question + " " + step if k == 0 else step, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        input_ids = tokenizer.apply_chat_template(conversation, return_tensors="pt")["input_ids"]
        logits = model(input_ids).logits[:, -3, candidate_tokens]
        scores.append(logits.softmax(dim=-1)[0, 0].item())
    return scores


@torch.inference_mode()
def skywork_card(path, question: str, steps: list[str]) -> list[float]:
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer.encode(tokenizer.bos_token + question + "\n")
    flags = [0] * len(ids)
    step_token_id = tokenizer.encode("\n")[-1]
    for step in "\n".join(steps).split("\n"):
        step_ids = [*tokenizer.encode(step), step_token_id]
        ids += step_ids
        flags += [0] * (len(step_ids) - 1) + [1]
    weights = load_file(str(path / "model.safetensors"))
    body = Qwen2Model.from_pretrained(path).eval()
    hidden = body(torch.tensor([ids])).last_hidden_state[0]
    rewards = torch.sigmoid(hidden @ weights["v_head.summary.weight"].T + weights["v_head.summary.bias"])[:, 0]
    return [rewards[i].item() for i, flag in enumerate(flags) if flag]


@torch.inference_mode()
def outcome_card(path, question: str, steps: list[str]) -> float:
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    conversation = [{"role": "user", "content": question}, {"role": "assistant", "content": "\n\n".join(steps)}]
    input_ids = tokenizer.apply_chat_template(conversation, return_tensors="pt")["input_ids"]
    return torch.sigmoid(model(input_ids).logits[0, 0]).item()


def assert_close(got, want) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a == pytest.approx(b, abs=FLOAT32)


def spread(scores) -> float:
    flat = [s for row in scores for s in row]
    return max(flat) - min(flat)


@pytest.mark.parametrize("name, card", [("math_shepherd", math_shepherd_card), ("rlhflow", rlhflow_card)])
def test_causal_lm_prms_match_their_cards(name, card, request):
    path = request.getfixturevalue(f"{name}_dir")
    full = load_prm(str(path), format=name, incremental=False, device="cpu", dtype="float32")
    incremental = load_prm(str(path), format=name, device="cpu", dtype="float32")
    batched = full.score(QUESTION, TRAJECTORIES)
    assert spread(batched) > 0.02  # far above rounding: a wrong position or token would show
    for steps, got in zip(TRAJECTORIES, batched):
        assert_close(got, card(path, QUESTION, steps))
        assert_close(full.score(QUESTION, [steps])[0], got)  # batched == one at a time
    first = incremental.score(QUESTION, [t[:1] for t in TRAJECTORIES])  # a search scores prefixes first
    for steps, got in zip(TRAJECTORIES, incremental.score(QUESTION, TRAJECTORIES)):
        assert_close(got, full.score(QUESTION, [steps])[0])
    assert [row[0] for row in first] == pytest.approx([row[0] for row in batched], abs=FLOAT32)


def test_a_mistral_prm_with_a_sliding_window_scores_incrementally_as_whole(math_shepherd_dir, tmp_path_factory):
    """Mistral windows every layer (math-shepherd's 7B: 4096 tokens); with a 16-token window the
    tree mask of incremental scoring must window them as transformers does whole inputs."""
    tokenizer = build_tokenizer(special=["<s>"], plain=["ки"], bos_token="<s>")
    windowed = save_causal_lm(
        tmp_path_factory.mktemp("windowed"),
        MistralForCausalLM,
        lambda **shape: MistralConfig(sliding_window=16, **shape),
        tokenizer,
        1,
    )
    full = load_prm(str(windowed), format="math_shepherd", incremental=False, device="cpu", dtype="float32")
    plain = load_prm(str(math_shepherd_dir), format="math_shepherd", incremental=False, device="cpu", dtype="float32")
    pairs = zip(full.score(QUESTION, TRAJECTORIES), plain.score(QUESTION, TRAJECTORIES))
    assert max(abs(a - b) for x, y in pairs for a, b in zip(x, y)) > 1e-3  # the window changes the scores
    incremental = load_prm(str(windowed), format="math_shepherd", device="cpu", dtype="float32")
    incremental.score(QUESTION, [t[:1] for t in TRAJECTORIES])  # prefixes first, as a search scores
    for steps, got in zip(TRAJECTORIES, incremental.score(QUESTION, TRAJECTORIES)):
        assert_close(got, full.score(QUESTION, [steps])[0])


def test_math_shepherd_tag_in_a_step_adds_no_step(math_shepherd_dir):
    scorer = load_prm(str(math_shepherd_dir), format="math_shepherd", incremental=False, device="cpu")
    assert len(scorer.score(QUESTION, [["3 ки 4", "7"]])[0]) == 2


def test_rlhflow_plus_in_a_step_is_not_a_verdict(rlhflow_dir):
    """'3 + 4' holds the '+' token; only a '+' that closes an assistant turn is read."""
    scorer = load_prm(str(rlhflow_dir), format="rlhflow", incremental=False, device="cpu")
    steps = ["3 + 4 + 5 = 12", "+", "The answer is 12."]
    assert_close(scorer.score(QUESTION, [steps])[0], rlhflow_card(rlhflow_dir, QUESTION, steps))


def test_skywork_is_detected_and_matches_its_inference_code(skywork_dir):
    scorer = load_prm(str(skywork_dir), device="cpu", dtype="float32")  # format "auto": Qwen2ForPrmModel
    assert scorer.describe()["format"] == "skywork"
    full = load_prm(str(skywork_dir), incremental=False, device="cpu", dtype="float32")
    single_line = [t for t in TRAJECTORIES if all("\n" not in s for s in t)]
    batched = full.score(QUESTION, single_line)
    assert spread(batched) > 0.02
    for steps, got in zip(single_line, batched):
        assert_close(got, skywork_card(skywork_dir, QUESTION, steps))
        assert_close(scorer.score(QUESTION, [steps])[0], got)
    # a step with its own line break is one line of Skywork's input, scored once at its end
    multi = TRAJECTORIES[2]
    got = full.score(QUESTION, [multi])[0]
    assert len(got) == len(multi)
    assert_close(got, skywork_card(skywork_dir, QUESTION, [s.replace("\n", " ") for s in multi]))


def test_skywork_without_a_value_head_is_a_clear_error(tmp_path, skywork_dir):
    import shutil

    broken = tmp_path / "no_head"
    shutil.copytree(skywork_dir, broken)
    weights = {k: v for k, v in load_file(str(broken / "model.safetensors")).items() if not k.startswith("v_head")}
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    from rfprm_tts.errors import PRMLoadError

    with pytest.raises(PRMLoadError, match="v_head.summary.weight.*prm.format"):
        load_prm(str(broken), device="cpu")


def test_outcome_model_is_detected_matches_its_own_pooling_and_refuses_partial_answers(outcome_dir):
    from helpers.fakes import ListGenerator
    from rfprm_tts.solver import ReasoningSolver

    scorer = load_prm(str(outcome_dir), device="cpu", dtype="float32")
    assert scorer.describe()["format"] == "outcome" and scorer.partial_ok is False
    batched = scorer.score(QUESTION, TRAJECTORIES)
    assert all(len(row) == 1 for row in batched) and spread(batched) > 0.02
    for steps, got in zip(TRAJECTORIES, batched):
        assert got[0] == pytest.approx(outcome_card(outcome_dir, QUESTION, steps), abs=FLOAT32)
        assert scorer.score(QUESTION, [steps])[0] == pytest.approx(got, abs=FLOAT32)

    answers = ["3 + 4 = 7.\n\nThe answer is \\boxed{7}.", "3 + 4 = 8.\n\nThe answer is \\boxed{8}."]
    with ReasoningSolver(generator=ListGenerator(answers), scorer=scorer) as solver:
        best = solver.solve(QUESTION, strategy="best_of_n", n=2)
        want = max(answers, key=lambda a: outcome_card(outcome_dir, QUESTION, a.split("\n\n")))
        assert best.best.trajectory.text == want
    steps = ListGenerator(["3 + 4 = 7.", "3 + 4 = 8."])  # one step each, no answer yet: partial
    with ReasoningSolver(generator=steps, scorer=scorer) as solver:
        with pytest.raises(ConfigError, match="complete answers only.*best_of_n"):
            solver.solve(QUESTION, strategy="beam_search", n=2, beam_width=2)


@pytest.mark.parametrize("name", ["math_shepherd", "rlhflow", "skywork", "outcome"])
def test_formats_the_pooling_runner_cannot_run_say_so(name, tmp_path):
    with pytest.raises(ConfigError, match=f"prm.format '{name}'.*prm.backend to 'transformers'"):
        from rfprm_tts.prm.loading import FORMATS, build_runner, choose_format
        from rfprm_tts.settings import PRMSettings

        settings = PRMSettings(format=name, backend="http", base_url="http://127.0.0.1:9")
        spec = choose_format(settings, str(tmp_path), None)
        assert spec is FORMATS[name]
        build_runner(settings, str(tmp_path), spec, None, None)


def test_a_causal_lm_under_the_default_format_names_the_formats_that_read_it(math_shepherd_dir):
    from rfprm_tts.errors import PRMLoadError

    with pytest.raises(PRMLoadError, match="math_shepherd"):
        load_prm(str(math_shepherd_dir), device="cpu")
