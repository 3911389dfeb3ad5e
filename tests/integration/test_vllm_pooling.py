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
    """Read per token (the demo PRM's format); the HTTP test below covers the step-tag read-out.
    Scored as a beam search scores them: the trajectories, then each grown two steps, then the
    grown ones again once the kept rows are gone. vLLM's prefix cache serves the heads (rows
    for the tails only come back) and the scores stay those of transformers."""
    if not HAS_VLLM:
        pytest.skip("vllm is not installed")
    import os

    from rfprm_tts.prm.runners.vllm_pooling import KnownRows

    os.environ.update({k: v for k, v in vllm_env().items() if k.startswith(("VLLM_", "HF_"))})
    reference = load_prm(str(token_level_prm_dir), readout="token_min", incremental=False)
    scorer = load_prm(
        str(token_level_prm_dir),
        backend="vllm",
        readout="token_min",
        dtype="float32",
        # see helpers.servers.vllm_env; blocks of 32 tokens (the CPU attention's least) so these short prompts have cached blocks
        vllm=dict(max_model_len=1024, enforce_eager=True, engine_kwargs={"block_size": 32}),
    )
    rng = random.Random(4)
    grown = [steps + random_steps(rng, 2) if steps else [] for steps in trajectories]
    try:
        rounds = [scorer.score_batch(QUESTION, trajectories), scorer.score_batch(QUESTION, grown)]
        scorer.runner.known = KnownRows(max_tokens=0)  # forgotten: the heads are run again, whole
        rounds.append(scorer.score_batch(QUESTION, grown))
    finally:
        scorer.close()
    for got, batch in zip(rounds, [trajectories, grown, grown]):
        want = reference.score_batch(QUESTION, batch)
        for a, b in zip(got.step_scores, want.step_scores):
            assert a == pytest.approx(b, abs=FLOAT32)
    whole = reference.score_batch(QUESTION, grown).tokens
    assert rounds[0].tokens < reference.score_batch(QUESTION, trajectories).tokens  # the question's blocks, shared
    assert rounds[1].tokens < whole / 2  # the grown answers: mostly cached
    assert rounds[2].tokens > whole  # tails run, then every prompt again


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
