"""Step-tag PRM on vLLM's pooling runner (in-process and over HTTP) against the transformers
scorer, on the tiny PRM in float32."""

import random
import sys

import pytest

from helpers.prm_inputs import QUESTION, random_steps
from helpers.servers import HAS_VLLM, vllm_env
from helpers.tolerances import FLOAT32
from rfprm_tts.bench.servers import free_port, server_process
from rfprm_tts.prm import load_prm

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def trajectories():
    rng = random.Random(3)
    return [random_steps(rng, k) for k in (1, 4, 2, 6)] + [[]]


def test_in_process_token_level_pooling_matches_transformers(token_level_prm_dir, trajectories):
    """Read per token (the demo PRM's format); the HTTP test below covers the step-tag read-out."""
    if not HAS_VLLM:
        pytest.skip("vllm is not installed")
    import os

    os.environ.update({k: v for k, v in vllm_env().items() if k.startswith(("VLLM_", "HF_"))})
    reference = load_prm(str(token_level_prm_dir), readout="token_min", incremental=False).score_batch(
        QUESTION, trajectories
    )
    scorer = load_prm(
        str(token_level_prm_dir),
        backend="vllm",
        readout="token_min",
        dtype="float32",
        vllm=dict(max_model_len=1024, enforce_eager=True),  # see helpers.servers.vllm_env
    )
    try:
        got = scorer.score_batch(QUESTION, trajectories)
    finally:
        scorer.close()
    assert got.tokens == reference.tokens
    for a, b in zip(got.step_scores, reference.step_scores):
        assert a == pytest.approx(b, abs=FLOAT32)


def test_http_pooling_server_matches_transformers(tiny_prm_dir, trajectories, tmp_path):
    if not HAS_VLLM:
        pytest.skip("vllm is not installed")
    from transformers import AutoTokenizer

    tag = AutoTokenizer.from_pretrained(tiny_prm_dir).convert_tokens_to_ids("<extra_0>")
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_prm_dir),
        "--runner",
        "pooling",
        "--pooler-config",
        f'{{"step_tag_id": {tag}}}',
        "--dtype",
        "float32",
        "--max-model-len",
        "1024",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",  # see helpers.servers.vllm_env
    ]
    with server_process(command, f"{root}/health", tmp_path / "pooling.log", vllm_env(), timeout_s=300):
        scorer = load_prm(str(tiny_prm_dir), backend="http", base_url=root)
        got = scorer.score_batch(QUESTION, trajectories)
        reference = load_prm(str(tiny_prm_dir), incremental=False).score_batch(QUESTION, trajectories)
        for a, b in zip(got.step_scores, reference.step_scores):
            assert a == pytest.approx(b, abs=FLOAT32)
