"""Every file in examples/ runs as a user runs it: `python examples/NAME.py` in a fresh
process (no `__main__` guard, no pytest), on the bundled demo world or a real local server."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rfprm_tts import SolveResult

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user with no rfprm settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFPRM_", "OPENAI_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=user_env(**env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done


def example(name: str, cwd: Path, *args: str, **env: str) -> str:
    return run([sys.executable, str(EXAMPLES / name), *args], cwd, **env).stdout


def test_every_example_is_tested_and_listed_in_the_readme():
    source = Path(__file__).read_text()
    tested = set(re.findall(r'(?:example\(\s*|EXAMPLES / )"([\w.]+)"', source)) | {"custom_strategy"}
    present = {p.name for p in EXAMPLES.iterdir() if p.suffix == ".py" or p.is_dir()} - {"__pycache__"}
    assert present == tested
    readme = (ROOT / "README.md").read_text()
    for name in present:
        assert f"(examples/{name})" in readme, f"README's examples table lacks {name}"


def test_quickstart(tmp_path):
    done = run([sys.executable, str(EXAMPLES / "quickstart.py")], tmp_path)
    out = done.stdout
    answer = re.search(r"^Answer: (.*)$", out, re.M).group(1)
    assert answer == "11"  # 8 + 6 - 3: a newcomer's first answer is right (the seed makes it repeatable)
    assert done.stderr == ""  # no "Loading weights" bar for the bundled world's instant load
    result = SolveResult.model_validate_json((tmp_path / "result.json").read_text())
    assert result.answer == answer and len(result.candidates) == 8
    step_lines = re.findall(r"^  (\d\.\d{3})  (.*)$", out, re.M)
    assert [line for _, line in step_lines] == result.best.trajectory.step_texts
    assert [float(s) for s, _ in step_lines] == pytest.approx(result.best.step_scores, abs=5e-4)
    assert f"generated_tokens={result.usage.generated_tokens}" in out and result.usage.prm_tokens > 0


def test_score_existing_responses_is_trajectory_aware(tmp_path):
    out = example("score_existing_responses.py", tmp_path)
    blocks = out.split("plain, one slip")
    think, plain = (re.findall(r"^  (\d\.\d{3})  \[(\w+)\]", block, re.M) for block in blocks)
    assert [part for _, part in think] == ["thinking", "thinking", "answer"]
    assert {part for _, part in plain} == {"response"}
    for block, steps in zip(blocks, (think, plain)):
        scores = [float(s) for s, _ in steps]
        body = scores[:-1] if steps[-1][1] == "answer" else scores  # the answer step is weighed apart
        reasonflux = float(re.search(r"reasonflux: ([\d.]+)", block).group(1))
        assert reasonflux == pytest.approx(sum(body) / len(body) + scores[-1], abs=2e-3)


def test_select_training_data_keeps_the_best_correct_answer_per_question(tmp_path):
    out = example("select_training_data.py", tmp_path)
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert len(scored) == 18 and "scored 18 of 18 rows" in out
    assert len(kept) == len({r["question"] for r in kept}) >= 1
    for row in kept:  # the best-scored right answer of its question
        right = [r for r in scored if r["question"] == row["question"] and f"\\boxed{{{r['answer']}}}" in r["response"]]
        assert row["rfprm"]["scores"]["reasonflux"] == max(r["rfprm"]["scores"]["reasonflux"] for r in right)
    rewards = [float(x) for x in re.search(r"rewards: \[([^\]]*)\]", out).group(1).split(",")]
    assert len(rewards) == 4 and all(0 <= r <= 1 for r in rewards)


def test_async_app_answers_every_question_concurrently(tmp_path):
    out = example("async_app.py", tmp_path)
    answers = re.findall(r"^Compute .* -> (\S+) \(", out, re.M)
    assert len(answers) == 6 and "6 questions concurrently" in out


def test_compute_vs_accuracy_writes_the_curve(tmp_path):
    out = example("compute_vs_accuracy.py", tmp_path)
    run_dir = tmp_path / "runs" / "example_curve"
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 8 * 2 * 3  # problems x strategies x budgets
    assert (run_dir / "accuracy_vs_tokens.png").stat().st_size > 0 and (run_dir / "summary.md").is_file()
    assert re.search(r"^best: \w+ at N=\d", out, re.M) and "accuracy_vs_n.png" in out


def test_proxy_client_uses_the_official_sdk(tmp_path):
    out = example("proxy_client.py", tmp_path)
    candidates = json.loads(re.search(r"^Candidates' answers: (.*)$", out, re.M).group(1).replace("'", '"'))
    assert len(candidates) == 8 and re.search(r"^Answer: \S+ \| strategy: weighted_best_of_n", out, re.M)
    assert re.search(r"^Streamed: .*boxed", out, re.M)


def test_hosted_api_reranking_runs_on_a_fresh_machine(tmp_path):
    """No endpoint configured: the stand-in answers one sample per request, so the 8 samples
    take the request the stand-in refuses (n=8) plus 8 single requests."""
    out = example("hosted_api_reranking.py", tmp_path)
    assert re.search(r"^Answer: \d+$", out, re.M)
    assert re.search(r"^Usage: [1-9]\d* generated tokens in 9 request\(s\)", out, re.M)


@pytest.mark.vllm
def test_hosted_api_reranking_against_a_real_vllm_server(tmp_path, vllm_server, tiny_prm_dir):
    """Pointed at the real vLLM server with the environment a user sets: one request for the
    8 samples (the server honours n), and the tokens it reports are what the server counted."""
    before = vllm_server.metric("vllm:generation_tokens_total")
    out = example(
        "hosted_api_reranking.py",
        tmp_path,
        "Compute 1 + 2.",
        OPENAI_BASE_URL=vllm_server.base_url,
        OPENAI_API_KEY="unused",
        OPENAI_MODEL="tiny",
        RFPRM_PRM__MODEL=str(tiny_prm_dir),
        SYSTEM_PROMPT="Please reason step by step.",
    )
    tokens = int(re.search(r"^Usage: (\d+) generated tokens in 1 request\(s\)", out, re.M).group(1))
    assert tokens > 0 and vllm_server.metric("vllm:generation_tokens_total") - before == tokens


def test_custom_strategy_package_is_used_by_name(tmp_path):
    """The plug-in installs as its own package (entry point); solve() and rfprm bench find it."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(EXAMPLES / "custom_strategy"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env = {"PYTHONPATH": str(target)}
    solved = run(
        [
            str(BIN / "rfprm"),
            "solve",
            "Compute 2 + 3 * 4.",
            "--strategy",
            "vote_then_verify",
            "-n",
            "4",
            "--param",
            "agreement=1.0",
            "--json",
        ],
        tmp_path,
        **env,
    )
    result = json.loads(solved.stdout)
    assert result["strategy"] == "vote_then_verify" and result["strategy_params"]["agreement"] == 1.0
    # agreement 1.0: unless all 4 samples agree, the PRM settles it
    assert (result["usage"]["prm_calls"] == 1) == result["details"]["verified"]
    run(
        [
            str(BIN / "rfprm"),
            "bench",
            "--dataset",
            "demo",
            "--limit",
            "2",
            "--strategies",
            "vote_then_verify",
            "--budgets",
            "2",
            "--out",
            str(tmp_path / "run"),
        ],
        tmp_path,
        **env,
    )
    rows = [json.loads(line) for line in (tmp_path / "run" / "rows.jsonl").read_text().splitlines()]
    assert [r["strategy"] for r in rows] == ["vote_then_verify"] * 2 and not any(r["error"] for r in rows)


def test_readme_python_section_is_the_quickstart_example():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python\n", 1)[1].split("\n## ", 1)[0]
    first_block = section.split("```python\n", 1)[1].split("```", 1)[0]
    source = (EXAMPLES / "quickstart.py").read_text()
    docstring_end = ast.parse(source).body[0].end_lineno
    code = "\n".join(source.splitlines()[docstring_end:]).strip() + "\n"
    assert first_block == code
