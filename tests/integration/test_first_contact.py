"""What a newcomer types first, run as they run it (issue 30): `rfprm --version`, a question on
standard input, a conversation from a file, the strategy names in --help, and output that says
what happened (steps of an unscored choice, why a candidate failed)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.processes import rfprm

QUESTION = "Compute 7 + 5 * 3 - 4."


def test_the_readme_quickstart_prints_what_the_readme_shows(tmp_path):
    """The front page's first output is what `rfprm solve` prints with the defaults ("the rest
    should match"): the same samples, steps and tokens; scores to the printed digits."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```", 2)[1].strip().splitlines()
    command, shown = shlex.split(block[0].removeprefix("$ ")), block[1:]
    assert command[0] == "rfprm"
    printed = rfprm(*command[1:], cwd=tmp_path).stdout.strip().splitlines()
    assert len(printed) == len(shown)
    for got, want in zip(printed, shown):
        if want.startswith("Usage:"):  # all but the wall time
            assert got.rsplit(";", 1)[0] == want.rsplit(";", 1)[0]
        elif match := re.match(r"  \[(\d\.\d{3})\] (.*)", want):
            score, step = re.match(r"  \[(\d\.\d{3})\] (.*)", got).groups()
            assert step == match[2] and float(score) == pytest.approx(float(match[1]), abs=0.002)
        else:
            assert got == want


def test_version_is_the_installed_one(tmp_path):
    done = rfprm("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"rfprm {importlib.metadata.version('rfprm-tts')}"


@pytest.fixture(scope="module")
def solved_json(tmp_path_factory) -> subprocess.CompletedProcess:
    """`rfprm solve QUESTION -n 2 --seed 0 --json`, run once for the tests that read it."""
    return rfprm("solve", QUESTION, "-n", "2", "--seed", "0", "--json", cwd=tmp_path_factory.mktemp("solved"))


def test_json_output_rounds_figures_and_keeps_the_text(solved_json):
    done = solved_json
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    floats = re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", done.stdout.replace(result["best"]["trajectory"]["text"], ""))
    assert floats, "the JSON has no figures"
    long = [f for f in floats if float(f"{float(f):.6g}") != float(f)]
    assert not long, f"figures with more than 6 significant digits: {long[:5]}"
    # the default aggregation, reasonflux, scores in [0, 1 + alpha] (alpha 1.0 by default)
    assert 0 < result["usage"]["wall_time_s"] < 600 and 0 <= result["best"]["score"] <= 2
    assert result["best"]["trajectory"]["text"].endswith("}.")  # the text itself is untouched


def test_stderr_is_quiet_unless_something_is_wrong(tmp_path, solved_json):
    """No loading bars or hub chatter without -v; an unreachable hub is one line, not a page of
    retries (the closed port refuses at once)."""
    assert solved_json.returncode == 0 and solved_json.stderr == "", solved_json.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    hub = {"HF_ENDPOINT": closed, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "0"}
    done = rfprm("solve", QUESTION, "--model", "some-org/some-llm", cwd=tmp_path, env=hub)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "'some-org/some-llm' was not found locally" in lines[0] and "cannot be reached" in lines[0]


def test_a_question_on_stdin_and_a_conversation_in_a_file_solve_like_the_question(tmp_path, solved_json):
    plain = json.loads(solved_json.stdout)
    piped = rfprm("solve", "-", "-n", "2", "--seed", "0", "--json", cwd=tmp_path, stdin=QUESTION + "\n")
    assert piped.returncode == 0, piped.stderr
    piped_result = json.loads(piped.stdout)
    assert piped_result["question"] == QUESTION  # not "-"
    (tmp_path / "chat.json").write_text(json.dumps([{"role": "user", "content": QUESTION}]))
    chat = rfprm("solve", "--messages", "chat.json", "-n", "2", "--seed", "0", "--json", cwd=tmp_path)
    assert chat.returncode == 0, chat.stderr
    for result in (piped_result, json.loads(chat.stdout)):  # one user message is the question itself
        assert [c["trajectory"]["text"] for c in result["candidates"]] == [
            c["trajectory"]["text"] for c in plain["candidates"]
        ]


def test_prompt_mistakes_are_one_line_each(tmp_path):
    (tmp_path / "chat.json").write_text(json.dumps({"role": "user", "content": QUESTION}))
    cases = {
        ("solve",): "give a question, or --messages FILE",
        ("solve", QUESTION, "--messages", "chat.json"): "give a question, or --messages FILE",
        ("solve", "--messages", "chat.json"): "not a list of {role, content} messages",
        ("solve", "--messages", "missing.json"): "missing.json",
    }
    for args, message in cases.items():
        done = rfprm(*args, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_strategy_help_names_every_registered_strategy(tmp_path):
    from rfprm_tts.strategies import available_strategies

    for command in ("solve", "serve", "bench"):
        shown = " ".join(rfprm(command, "--help", cwd=tmp_path).stdout.split())  # argparse wraps lines
        assert all(name in shown for name in available_strategies()), (command, shown)


def test_an_unscored_choice_shows_its_steps_and_failures_say_why(tmp_path):
    vote = rfprm("solve", QUESTION, "--strategy", "majority_vote", "-n", "4", "--seed", "0", cwd=tmp_path)
    assert vote.returncode == 0, vote.stderr
    assert "not scored: this strategy uses no PRM" in vote.stdout and "PRM score per step" not in vote.stdout
    assert "\\boxed{" in vote.stdout  # the chosen answer's steps are shown, down to its answer
    cut = rfprm("solve", QUESTION, "-n", "2", "--seed", "0", "--param", "token_budget=100", cwd=tmp_path)
    assert cut.returncode == 0, cut.stderr
    assert "failed: 1 cut short by the solve's token budget (100 tokens)" in cut.stdout
    short = rfprm("solve", QUESTION, "-n", "2", "--seed", "0", "--max-tokens", "20", cwd=tmp_path)
    assert short.returncode == 0, short.stderr
    assert "Answer: (none found): 2 of 2 candidates were cut at the token limit" in short.stdout


def test_plots_need_matplotlib_alone_and_hub_datasets_name_their_extra(tmp_path):
    """`[bench]` is for plots and brings matplotlib only; a dataset named by its hub name without
    the datasets package is one line naming `[hub]` (before: 15 packages for a plot)."""
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert [r.split(">")[0] for r in extras["bench"]] == ["matplotlib"]
    assert any(r.startswith("datasets") for r in extras["hub"])
    code = (
        "import sys; sys.modules['datasets'] = None\n"  # as where the hub extra is not installed
        "from rfprm_tts.cli import main\n"
        "sys.exit(main(['bench', '--dataset', 'someone/set', '--out', 'run', '--limit', '1']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "pip install 'rfprm-tts[hub]'" in lines[0], done.stderr


def test_serve_takes_its_model_name_and_limits_as_flags(tmp_path):
    import httpx

    from rfprm_tts.bench.servers import free_port, server_process

    port = free_port()
    command = [sys.executable, "-m", "rfprm_tts.cli", "serve", "--port", str(port), "--model-name", "reranker"]
    command += ["--max-n", "3", "--max-concurrent-per-key", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    # the default n (8) over the limit: no request could run it, so the server says so at start
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "n=8 is over serve.max_n (3)" in refused.stderr and "-n" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    command += ["-n", "2"]
    url = f"http://127.0.0.1:{port}"
    with server_process(command, f"{url}/health", tmp_path / "serve.log", env=env, timeout_s=300):
        models = httpx.get(f"{url}/v1/models", timeout=30).json()
        too_many = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "reranker", "messages": [{"role": "user", "content": QUESTION}], "rfprm": {"n": 4}},
            timeout=60,
        )
    assert [m["id"] for m in models["data"]] == ["reranker"]
    assert too_many.status_code == 400 and "3" in too_many.json()["error"]["message"], too_many.text


def test_the_demo_worlds_say_what_they_can_do_when_asked_something_else(tmp_path):
    """Each bundled model only does its arithmetic; asked anything else it still answers (the
    search ran), and one line on stderr says why that answer means nothing."""
    beyond = rfprm("solve", "Compute 1 + 2 + 3 + 4 + 5 + 6.", "-n", "1", "--seed", "0", cwd=tmp_path)
    assert beyond.returncode == 0 and beyond.stdout.startswith("Answer:"), beyond.stderr
    assert "the bundled demo-think model only does integer arithmetic" in beyond.stderr and "(1 to 4" in beyond.stderr
    demo = ("--model", "demo", "--prm", "demo")
    outside = rfprm("solve", "Compute 1 + 2.", "-n", "2", "--seed", "0", *demo, cwd=tmp_path)
    assert "the bundled demo model only does integer arithmetic like 'Compute 7 + 5 * 3 - 4.' (2 to 4" in outside.stderr
    inside = rfprm("solve", QUESTION, "-n", "2", "--seed", "0", *demo, cwd=tmp_path)
    assert inside.returncode == 0 and inside.stderr == "", inside.stderr
