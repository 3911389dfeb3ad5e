import json
import os
import subprocess
import sys


def rfprm(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    return subprocess.run(
        [sys.executable, "-m", "rfprm_tts.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_solve_prints_answer_steps_and_usage(tmp_path):
    out = rfprm("solve", "Compute 7 + 5 * 3 - 4.", "-n", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Answer: ")
    assert "Strategy: best_of_n (n=2" in out.stdout and "Usage: " in out.stdout

    out = rfprm("solve", "Compute 1 + 1.", "-n", "2", "--json", cwd=tmp_path)
    result = json.loads(out.stdout)
    assert len(result["candidates"]) == 2 and result["usage"]["generator_calls"] == 1


def test_bad_input_exits_2_with_a_message(tmp_path):
    for args, message in [
        (["solve", ""], "prompt is empty"),
        (["solve", "q", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["solve", "q", "--aggregation", "median"], "prm.aggregation"),
        (["solve", "q", "-n", "0"], "greater than or equal to 1"),
        (["solve", "q", "--backend", "openai"], "needs a base URL"),
    ]:
        out = rfprm(*args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
