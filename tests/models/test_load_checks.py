"""Load-time checks (issue #27): a user's mistake in a model, a device, a strategy argument or a
prompt is one RfprmError whose message names what is wrong, found before any search runs and
without a traceback, a long wait or garbage output. Each case corrupts a tiny checkpoint built
by the tests (a random Qwen2, see tests/conftest.py) the way a user's would be."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save_file

from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts.cli import main
from rfprm_tts.demo.tiny import build_tiny_generator, build_tokenizer
from rfprm_tts.errors import ConfigError, PRMLoadError
from rfprm_tts.generators.transformers import TransformersGenerator
from rfprm_tts.prm import load_prm
from rfprm_tts.runtime.model_names import checkpoint_path
from rfprm_tts.runtime.torch_utils import pick_device
from rfprm_tts.settings import GeneratorSettings
from rfprm_tts.solver import ReasoningSolver
from rfprm_tts.strategies import build_strategy

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a CUDA GPU")


def generator(path: Path | str, **settings) -> TransformersGenerator:
    return TransformersGenerator(GeneratorSettings(model=str(path), **settings))


def copy(checkpoint: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / name))


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def truncate(file: Path, keep: float) -> None:
    file.write_bytes(file.read_bytes()[: int(file.stat().st_size * keep)])


def remove_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)


def remove_chat_template(folder: Path) -> None:
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """An empty hub cache, and the hub refused: a check that asks it fails the test."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))

    def refuse(*args, **kwargs):
        raise AssertionError("the check asked the hub")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", refuse)


# 1. Devices


@NO_GPU
def test_a_cuda_generator_device_without_a_gpu_is_refused_before_loading(tiny_generator_dir):
    with pytest.raises(
        ConfigError, match=r"generator\.device is 'cuda' but .* no CUDA GPU; set generator\.device to 'cpu'"
    ):
        generator(tiny_generator_dir, device="cuda")


@NO_GPU
def test_a_cuda_prm_device_without_a_gpu_is_refused(tiny_prm_dir):
    with pytest.raises(ConfigError, match=r"prm\.device is 'cuda:1' but .* no CUDA GPU"):
        load_prm(str(tiny_prm_dir), device="cuda:1")


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_flash_attention_without_its_package_says_what_to_do_instead(tiny_prm_dir):
    """Whole-input scoring loads flash attention (incremental scoring runs sdpa and needs no flash-attn)."""
    with pytest.raises(PRMLoadError) as caught:
        load_prm(str(tiny_prm_dir), attention="flash_attention_2", incremental=False)
    message = str(caught.value)
    assert (
        "FlashAttention2" in message
        and "install flash-attn, or set prm.attention to 'sdpa' or 'flex_attention'" in message
    )
    assert "\n" not in message


@NO_GPU
def test_the_cli_says_device_cuda_in_one_line_and_exits_2(capsys):
    assert main(["solve", "Compute 1 + 1.", "-n", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err  # after the generator's loading progress bar
    assert err.splitlines()[-1].startswith("error: prm.device is 'cuda' but") and "Traceback" not in err


def test_a_cuda_index_past_the_machine_s_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"prm\.device is 'cuda:1' but this machine has 1 CUDA GPU"):
        pick_device("cuda:1", "prm.device")
    assert pick_device("cuda:0", "prm.device") == torch.device("cuda:0")


# 2. A folder that is not a model


@pytest.mark.parametrize("files", [{}, {"notes.txt": "a model, one day", "README.md": "# mine"}])
def test_a_generator_folder_without_a_config_is_named(tmp_path, files):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(ConfigError, match=f"generator model folder {folder} has no config.json"):
        generator(folder)


@pytest.mark.parametrize("remove, missing", [(remove_tokenizer, "tokenizer"), (remove_chat_template, "chat template")])
def test_a_generator_without_its_tokenizer_or_chat_template_is_named(tiny_generator_dir, tmp_path, remove, missing):
    folder = copy(tiny_generator_dir, tmp_path)
    remove(folder)
    with pytest.raises(ConfigError, match=f"generator checkpoint {folder} has no {missing}"):
        generator(folder)


def test_a_prm_without_its_tokenizer_is_told_so_not_about_its_step_tag(tiny_prm_dir, tmp_path):
    folder = copy(tiny_prm_dir, tmp_path)
    remove_tokenizer(folder)
    with pytest.raises(PRMLoadError, match=f"prm checkpoint {folder} has no tokenizer"):
        load_prm(str(folder))


def test_a_tokenizer_of_another_model_is_refused_before_it_indexes_past_the_embedding(tiny_generator_dir, tmp_path):
    folder = copy(tiny_generator_dir, tmp_path)
    bigger = build_tokenizer(special=[f"<extra_{k}>" for k in range(1, 41)])
    bigger.save_pretrained(folder)
    embedded = json.loads((folder / "config.json").read_text())["vocab_size"]
    with pytest.raises(ConfigError, match=f"has {len(bigger)} tokens but the model embeds only {embedded}"):
        generator(folder)


# 3. Names: near misses of short names, hub names without the hub


@pytest.mark.usefixtures("no_hub")
def test_a_near_miss_of_a_short_name_suggests_it_without_asking_the_hub():
    started = time.monotonic()
    with pytest.raises(ConfigError, match="'demo2' is neither a short name nor a local folder; did you mean 'demo'"):
        load_prm("demo2")
    with pytest.raises(ConfigError, match="generator model 'demo2' .* did you mean 'demo'"):
        generator("demo2")
    assert time.monotonic() - started < 5


@pytest.mark.usefixtures("no_hub")
def test_offline_a_hub_name_not_cached_says_a_download_is_needed(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        PRMLoadError,
        match="'some-org/some-prm' was not found locally and would need a download .*"
        "HF_HUB_OFFLINE=0 with network access, or pass a local path",
    ):
        load_prm("some-org/some-prm")


def test_an_unreachable_hub_fails_at_once_with_what_was_needed(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    started = time.monotonic()
    with pytest.raises(
        ConfigError,
        match="generator model 'some-org/some-llm' was not found locally and would need a "
        "download .* cannot be reached",
    ):
        generator("some-org/some-llm")
    assert time.monotonic() - started < 10  # the loaders' own retries took 25 to 50 s


@pytest.mark.usefixtures("no_hub")
def test_a_cached_hub_name_is_used_without_asking_the_hub():
    snapshot = Path(constants.HF_HUB_CACHE, "models--some-org--cached", "snapshots", "0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    assert checkpoint_path("some-org/cached", "prm") == "some-org/cached"


# 4. Checkpoints whose weights do not match their config, or are damaged


@pytest.mark.parametrize(
    "model_type, architecture, problem",
    [
        (
            "llama",
            "LlamaForCausalLM",
            r"6 weights the model does not have \(e\.g\. model\.layers\.0\.self_attn\.k_proj\.bias\)",
        ),
        ("bert", "BertForMaskedLM", r"weights missing \(e\.g\. bert\."),
    ],
)
def test_a_generator_config_naming_another_architecture_is_refused(
    tiny_generator_dir, tmp_path, model_type, architecture, problem
):
    """Llama's attention has no biases and BERT none of Qwen2's weights: today both load with
    random weights where the checkpoint's do not fit, and write garbage."""
    folder = copy(tiny_generator_dir, tmp_path)
    edit_config(folder, model_type=model_type, architectures=[architecture])
    with pytest.raises(ConfigError, match=f"generator checkpoint {folder} does not match its config.json .*{problem}"):
        generator(folder)


def test_a_generator_weight_of_the_wrong_shape_names_both_shapes(tiny_generator_dir, tmp_path):
    folder = copy(tiny_generator_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    edit_config(folder, intermediate_size=config["intermediate_size"] // 2)
    big, small, hidden = config["intermediate_size"], config["intermediate_size"] // 2, config["hidden_size"]
    shapes = (  # up/gate projections are [intermediate, hidden], the down projection [hidden, intermediate]
        rf"(\({big}, {hidden}\) in the checkpoint, \({small}, {hidden}\)"
        rf"|\({hidden}, {big}\) in the checkpoint, \({hidden}, {small}\))"
    )
    with pytest.raises(
        ConfigError, match=rf"6 weights of the wrong shape \(e\.g\. model\.layers\.\d\.mlp\.\w+\.weight: {shapes}"
    ):
        generator(folder)


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_a_truncated_or_empty_generator_weights_file_is_named(tiny_generator_dir, tmp_path, keep):
    folder = copy(tiny_generator_dir, tmp_path)
    truncate(folder / "model.safetensors", keep)
    with pytest.raises(
        ConfigError, match=f"{folder / 'model.safetensors'} is not a readable safetensors file .*truncated"
    ):
        generator(folder)


def test_missing_generator_weights_are_named(tiny_generator_dir, tmp_path):
    folder = copy(tiny_generator_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=f"generator checkpoint {folder} has no weights"):
        generator(folder)


def test_a_shard_missing_from_an_index_is_named(tiny_generator_dir, tmp_path):
    folder = copy(tiny_generator_dir, tmp_path)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    keys = list(json.loads((folder / "model-00001-of-00002.safetensors").read_bytes()[8:].split(b"}}")[0] + b"}}"))
    weight_map = {key: "model-00001-of-00002.safetensors" for key in keys if key != "__metadata__"}
    weight_map["lm_head.weight"] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ConfigError, match=f"{folder / 'model-00002-of-00002.safetensors'} is missing"):
        generator(folder)


def test_a_step_tag_prm_config_over_causal_lm_weights_is_refused(tiny_generator_dir, tmp_path):
    """A config that says Qwen2ForProcessRewardModel over a causal LM's weights: its score
    head would be random."""
    folder = copy(tiny_generator_dir, tmp_path)
    edit_config(folder, architectures=["Qwen2ForProcessRewardModel"], num_labels=2)
    with pytest.raises(PRMLoadError, match=r"prm checkpoint .* weights missing \(e\.g\. score\.0\.bias\)"):
        load_prm(str(folder))


def test_a_prm_checkpoint_that_keeps_a_language_model_head_still_loads(tiny_prm_dir, tmp_path):
    """Some PRM checkpoints keep the lm_head of the model they were trained from; the PRM
    does not use it (vLLM's class skips it too), so it is no mismatch."""
    folder = copy(tiny_prm_dir, tmp_path)
    weights = load_file(folder / "model.safetensors")
    weights["lm_head.weight"] = weights["model.embed_tokens.weight"].clone()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    question, steps = "Compute 1 + 1.", ["1 + 1 = 2.", "The answer is 2."]
    assert load_prm(str(folder)).score(question, [steps]) == load_prm(str(tiny_prm_dir)).score(question, [steps])


def test_a_prm_head_of_the_wrong_shape_is_refused(tiny_prm_dir, tmp_path):
    folder = copy(tiny_prm_dir, tmp_path)
    edit_config(folder, num_labels=3, id2label={str(k): f"LABEL_{k}" for k in range(3)})
    with pytest.raises(
        PRMLoadError, match=r"weights of the wrong shape \(e\.g\. score\.2\.bias: \(2,\) in the checkpoint, \(3,\)"
    ):
        load_prm(str(folder))


def test_a_prm_without_a_chat_template_is_named(tiny_prm_dir, tmp_path):
    folder = copy(tiny_prm_dir, tmp_path)
    remove_chat_template(folder)
    with pytest.raises(PRMLoadError, match=f"prm checkpoint {folder} has no chat template"):
        load_prm(str(folder))


def test_a_causal_lm_forced_as_an_outcome_model_is_refused_for_its_missing_head(tmp_path):
    folder = build_tiny_generator(tmp_path / "lm", num_labels=1)
    with pytest.raises(PRMLoadError, match=r"weights missing \(e\.g\. score\.weight\)"):
        load_prm(str(folder), format="outcome")


@pytest.fixture(scope="module")
def prm_checkpoints(tmp_path_factory, tiny_prm_dir) -> dict[str, tuple[Path, dict]]:
    """One checkpoint per PRM format the transformers runners load, with the options that load
    it: the step-tag PRM, and a causal LM read as each of the other formats."""
    root = tmp_path_factory.mktemp("formats")
    scalar = build_tiny_generator(root / "scalar_head", seed=3)
    torch.save(torch.nn.Linear(64, 1).state_dict(), scalar / "reward_head.pt")
    return {
        "step_tag": (tiny_prm_dir, {}),
        "scalar_head": (scalar, {}),
        "math_shepherd": (
            build_tiny_generator(root / "math_shepherd", seed=4),
            {"format": "math_shepherd", "step_tag": "<extra_0>"},
        ),
        "rlhflow": (build_tiny_generator(root / "rlhflow", seed=5), {"format": "rlhflow"}),
        "skywork": (build_tiny_generator(root / "skywork", seed=6), {"format": "skywork"}),
        "outcome": (build_tiny_generator(root / "outcome", seed=7, num_labels=1), {"format": "outcome"}),
    }


@pytest.mark.parametrize("name", ["step_tag", "scalar_head", "math_shepherd", "rlhflow", "skywork", "outcome"])
def test_every_prm_format_names_a_truncated_weights_file(prm_checkpoints, tmp_path, name):
    checkpoint, options = prm_checkpoints[name]
    folder = copy(checkpoint, tmp_path)
    truncate(folder / "model.safetensors", 0.5)
    with pytest.raises(
        PRMLoadError, match=f"{folder / 'model.safetensors'} is not a readable safetensors file .*truncated"
    ):
        load_prm(str(folder), **options)


def test_a_scalar_head_prm_names_its_missing_or_damaged_reward_head(prm_checkpoints, tmp_path):
    checkpoint, _ = prm_checkpoints["scalar_head"]
    folder = copy(checkpoint, tmp_path)
    truncate(folder / "reward_head.pt", 0.5)
    with pytest.raises(PRMLoadError, match=f"{folder / 'reward_head.pt'} cannot be read .*truncated or corrupt"):
        load_prm(str(folder))
    (folder / "reward_head.pt").unlink()
    with pytest.raises(PRMLoadError, match=f"{folder / 'reward_head.pt'} is missing"):
        load_prm(str(folder), format="scalar_head")


# 5. Beam widths that do not divide N


@pytest.mark.parametrize("strategy", ["beam_search", "dvts"])
@pytest.mark.parametrize("n", [1, 2, 6])
def test_n_not_a_multiple_of_the_beam_width_is_refused(strategy, n):
    """At beam width 4, dvts ran one subtree of 4 samples for n = 1, 2 and 4 alike: a bench
    curve labelled those runs with three budgets."""
    with pytest.raises(ConfigError, match=f"n={n} is not a multiple of beam_width=4.*use n in 4, 8, 12"):
        build_strategy(strategy, n=n)
    assert build_strategy(strategy, n=n, beam_width=n).params.n == n  # the width it suggests runs


def test_a_solve_with_a_bad_beam_width_fails_before_any_generation():
    gen = ListGenerator(["The answer is \\boxed{1}."])
    with pytest.raises(
        ConfigError, match="n=8 is not a multiple of beam_width=3.*beam_width that divides 8 \\(1, 2, 4, 8\\)"
    ):
        ReasoningSolver(generator=gen, scorer=DigitScorer()).solve("q", strategy="dvts", n=8, beam_width=3)
    assert gen.requests == []


# 6. Text that is not Unicode


@pytest.mark.parametrize(
    "prompt, overrides, field",
    [
        ("What is 1 + \ud800?", {}, "the question"),
        ([{"role": "system", "content": "Be brief \udfff"}, {"role": "user", "content": "1 + 1?"}], {}, "message 0"),
        (
            "1 + 1?",
            {"generator__system_prompt": "Think \ud83d first."},
            r"the system prompt \(generator\.system_prompt\)",
        ),
    ],
)
def test_a_lone_surrogate_is_refused_naming_where_it_is(prompt, overrides, field):
    gen = ListGenerator(["The answer is \\boxed{2}."])
    with ReasoningSolver(generator=gen, scorer=DigitScorer()) as solver:
        with pytest.raises(ConfigError, match=f"{field} holds a lone surrogate"):
            solver.solve(prompt, n=1, **overrides)
    assert gen.requests == []
