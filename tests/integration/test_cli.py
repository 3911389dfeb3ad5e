import json
import os
import subprocess
import sys

import pytest

from helpers.processes import rfprm


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
        (["solve", "q", "-n", "0"], "-n/--n: must be at least 1"),
        (["solve", "q", "--backend", "openai"], "needs a base URL"),
    ]:
        out = rfprm(*args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr


def test_json_output_is_only_the_result_even_when_libraries_print(tmp_path):
    """`rfprm solve --json | jq`: stdout holds the result alone; a library that prints to
    stdout while it works (Python- or descriptor-level, as vLLM's engine does) or at exit
    lands on stderr. The noise is made by a library imported during the solve."""
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    (noisy / "sitecustomize.py").write_text(
        "import atexit, builtins, os\n"
        "plain_import = builtins.__import__\n"
        "def noisy_import(name, *args, **kwargs):\n"
        "    module = plain_import(name, *args, **kwargs)\n"
        "    if name == 'rfprm_tts.solver' and not hasattr(builtins, 'noised'):\n"
        "        builtins.noised = True\n"
        "        print('python-level noise')\n"
        "        os.write(1, b'descriptor-level noise\\n')\n"
        "        atexit.register(lambda: print('noise at exit'))\n"
        "    return module\n"
        "builtins.__import__ = noisy_import\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    env["PYTHONPATH"] = str(noisy)
    out = subprocess.run(
        [sys.executable, "-m", "rfprm_tts.cli", "solve", "Compute 1 + 1.", "-n", "2", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["usage"]["generator_calls"] == 1
    assert {"python-level noise", "descriptor-level noise", "noise at exit"} <= set(out.stderr.splitlines())


@pytest.mark.vllm
def test_vllm_backend_json_output_parses(tmp_path, tiny_generator_dir, tiny_prm_dir):
    """With the in-process vLLM engine (whose logger and engine process write to stdout by
    default), stdout is still exactly the JSON result."""
    from helpers.servers import HAS_VLLM, vllm_env

    if not HAS_VLLM:
        pytest.skip("vllm is not installed")
    leave_out = ("VLLM_LOGGING_LEVEL", "VLLM_ENABLE_V1_MULTIPROCESSING")  # vLLM's defaults: its engine process too
    env = {k: v for k, v in vllm_env().items() if not k.startswith("RFPRM_") and k not in leave_out}
    env.update(
        RFPRM_GENERATOR__DTYPE="float32",
        RFPRM_GENERATOR__VLLM__MAX_MODEL_LEN="1024",
        RFPRM_GENERATOR__VLLM__ENFORCE_EAGER="true",  # see helpers.servers.vllm_env
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rfprm_tts.cli",
            "solve",
            "Compute 1 + 1.",
            "-n",
            "2",
            "--json",
            "--backend",
            "vllm",
            "--model",
            str(tiny_generator_dir),
            "--prm",
            str(tiny_prm_dir),
            "--max-tokens",
            "16",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)["usage"]["generated_tokens"] > 0
