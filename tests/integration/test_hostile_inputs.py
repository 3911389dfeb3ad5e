"""Every `rfprm` command against what users really feed it (issue 27's harness).

The commands are discovered from the CLI's parsers, so a new command fails
`test_every_command_has_a_call` until it is given a call here and so joins every matrix below.
Each case runs the real CLI in a subprocess, in a folder that also holds a canary secret in
`.env`, and asserts the invariants: exit 2 with one `error: ...` line (130 and one
`interrupted: ...` line for Ctrl-C), no traceback, the canary nowhere in what the program
wrote, and every input file byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rfprm_tts.cli import command_parsers

CANARY = "sk-canary-5b1e7d0c93"
QUESTION = "Compute 12 + 7 * 3."
RIGHT = "7 * 3 = 21\n\n12 + 21 = 33\n\nThe answer is \\boxed{33}."

# How each command is called with an input IN and an output OUT ({IN}, {OUT} are filled in).
# A command missing here fails the discovery test below.
CALLS: dict[str, list[str]] = {
    "solve": ["solve", QUESTION, "-n", "1", "--max-tokens", "16", "--html", "{OUT}"],
    "bench": [
        "bench",
        "--dataset",
        "{IN}",
        "--out",
        "{OUT}",
        "--strategies",
        "best_of_n",
        "--budgets",
        "1",
        "--max-tokens",
        "16",
    ],
    "bench report": ["bench", "report", "{IN}"],
    "bench merge": ["bench", "merge", "{OUT}", "{IN}"],
    "serve": ["serve", "--port", "0"],
    "view": ["view", "{IN}", "-o", "{OUT}"],
    "score": ["score", "{IN}", "-o", "{OUT}"],
    "select": ["select", "{IN}", "-o", "{OUT}", "--top-k", "1"],
    "eval-prm": ["eval-prm", "{IN}", "--out", "{OUT}"],
    "fit-aggregation": ["fit-aggregation", "{IN}", "-o", "{OUT}"],
}
RUN_FOLDER_INPUT = {"bench report", "bench merge"}  # their input is a run folder: the bad file is its rows.jsonl
FILE_COMMANDS = [c for c, call in CALLS.items() if "{IN}" in call]


def test_every_command_has_a_call():
    assert set(command_parsers()) == set(CALLS)


def rfprm(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    return subprocess.run(
        [sys.executable, "-m", "rfprm_tts.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def digest(folder: Path) -> dict[str, str]:
    """Every regular file below `folder` (the user's files) with its hash."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def assert_one_error_line(done: subprocess.CompletedProcess, *, code: int = 2, starts: str = "error: ") -> str:
    everything = done.stdout + done.stderr
    assert "Traceback" not in everything, done.stderr
    assert CANARY not in everything
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), done.stderr
    return lines[0]


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An app's folder: its own .env full of foreign variables and secrets (none of ours)."""
    (tmp_path / ".env").write_text(
        f"OPENAI_API_KEY={CANARY}\nDATABASE_URL=postgres://u:{CANARY}@db/x\nFOO=bar\n"
        f"this line is not NAME=VALUE\nexport SECRET_TOKEN='{CANARY}'\n"
    )
    return tmp_path


# ------------------------------------------------------------------ hostile input files

HOSTILE_FILES: dict[str, bytes | None] = {
    "missing": None,
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "latin-1": '{"question": "caf\xe9", "response": "x", "answer": "1", "problem": "p"}\n'.encode("latin-1"),
    "utf-16": '{"question": "q", "response": "r"}\n'.encode("utf-16"),
    "truncated": b'{"question": "q", "respo',
    "not-objects": b"[1, 2]\n3\n",
    "deep": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "huge-number": b'{"question": ' + b"9" * 5000 + b"}\n",
}


def place_input(folder: Path, command: str, content: bytes | None) -> Path:
    """The bad content where `command` reads it: a file, or a run folder's rows.jsonl."""
    target = folder / "input.jsonl"
    if command in RUN_FOLDER_INPUT:
        run = folder / "run"
        if content is not None:
            run.mkdir()
            (run / "run.json").write_text(
                json.dumps(
                    {
                        "dataset": "demo",
                        "strategies": ["best_of_n"],
                        "budgets": [1],
                        "problem_ids": ["a"],
                        "shard": {"index": 0, "count": 1},
                    }
                )
            )
            (run / "rows.jsonl").write_bytes(content)
        return run
    if content is not None:
        target.write_bytes(content)
    return target


def call(command: str, inp: Path | str, out: Path | str) -> list[str]:
    return [str(inp) if a == "{IN}" else str(out) if a == "{OUT}" else a for a in CALLS[command]]


@pytest.mark.parametrize("case", HOSTILE_FILES)
@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_hostile_input_files(app, command, case):
    inp = place_input(app, command, HOSTILE_FILES[case])
    before = digest(app)
    done = rfprm(call(command, inp, app / "out"), app)
    assert_one_error_line(done)
    assert {k: v for k, v in digest(app).items() if k.startswith(("input", "run", ".env"))} == before


@pytest.mark.parametrize("command", FILE_COMMANDS)
@pytest.mark.parametrize("kind", ["a pipe", "a device", "a folder"])
def test_inputs_that_are_not_files(app, command, kind):
    """A FIFO would hang and /dev/zero never end: both refused at once, like a folder."""
    if command in RUN_FOLDER_INPUT:
        inp = Path("/dev/zero") if kind == "a device" else app / "plain"
        if kind == "a pipe":
            os.mkfifo(inp)
        elif kind == "a folder":
            inp.mkdir()  # a folder, but no run in it
    elif kind == "a pipe":
        inp = app / "fifo.jsonl"
        os.mkfifo(inp)
    elif kind == "a device":
        inp = Path("/dev/zero")
    else:
        inp = app / "folder.jsonl"
        inp.mkdir()
    assert_one_error_line(rfprm(call(command, inp, app / "out"), app, timeout=60))


# ------------------------------------------------------------------ outputs that would destroy inputs


def valid_input(folder: Path, command: str) -> Path:
    """An input each command accepts, so the output is the only thing wrong."""
    rows = {
        "bench": [{"question": QUESTION, "answer": "33"}],
        "score": [{"question": QUESTION, "response": RIGHT}],
        "select": [{"question": QUESTION, "response": RIGHT, "rfprm": {"scores": {"reasonflux": 0.5}}}],
        "eval-prm": [{"problem": QUESTION, "steps": RIGHT.split("\n\n"), "label": -1}],
        "fit-aggregation": [
            {"question": QUESTION, "response": response, "answer": "33", "rfprm": {"step_scores": [0.9, score]}}
            for response, score in [(RIGHT, 0.8), (RIGHT.replace("33", "34"), 0.2)]
        ],
        "view": [],
    }
    path = folder / "given.jsonl"
    if command not in FILE_COMMANDS:
        return path  # not read
    if command == "view":
        path.write_text((Path(__file__).parents[1] / "data" / "solve_result.json").read_text())
    elif command in RUN_FOLDER_INPUT:
        path = folder / "given-run"
        path.mkdir()
        (path / "run.json").write_text(
            json.dumps(
                {
                    "dataset": "demo",
                    "strategies": ["best_of_n"],
                    "budgets": [1],
                    "problem_ids": ["a"],
                    "shard": {"index": 0, "count": 1},
                }
            )
        )
        (path / "rows.jsonl").write_text("")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows[command]))
    return path


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
@pytest.mark.parametrize("command", [c for c in FILE_COMMANDS if "{OUT}" in CALLS[c]])
def test_output_that_is_an_input_is_refused(app, command, how):
    given = valid_input(app, command)
    out = {"same path": given, "symlink": app / "link", "hard link": app / "hard"}[how]
    if how == "symlink":
        out.symlink_to(given)
    elif how == "hard link":
        if given.is_dir():
            pytest.skip("folders have no hard links")
        os.link(given, out)
    before = digest(app)
    line = assert_one_error_line(rfprm(call(command, given, out), app))
    assert "input" in line or "folder" in line
    assert digest(app) == before


FOLDER_OUTPUTS = {"bench", "bench merge"}  # a run folder is created with its parents; a file's folder must exist


@pytest.mark.parametrize("command", [c for c, call_ in CALLS.items() if "{OUT}" in call_ and c not in FOLDER_OUTPUTS])
def test_output_in_a_missing_folder_is_refused_before_any_work(app, command):
    started = time.perf_counter()
    line = assert_one_error_line(rfprm(call(command, valid_input(app, command), app / "no" / "such" / "out"), app))
    assert "does not exist" in line and "mkdir -p" in line
    assert time.perf_counter() - started < 30  # refused before any model loads (a solve takes longer)


# ------------------------------------------------------------------ settings sources

SETTINGS_CASES = {
    # name: (file name -> content, environment, what the one line must name)
    "env typo": ({}, {"RFPRM_GENERATOR__TEMPRATURE": "0.5"}, "did you mean 'generator.temperature'"),
    "dotenv typo": ({".env": f"OPENAI_API_KEY={CANARY}\nRFPRM_PRM__AGGREGATON=min\n"}, {}, ".env line 2"),
    "toml nested typo": ({"rfprm.toml": "[generator]\ntemprature = 0.5\n"}, {}, "rfprm.toml line 2"),
    "toml secret at top level": ({"rfprm.toml": f'api_key = "{CANARY}"\n'}, {}, "unknown setting 'api_key'"),
    "toml malformed": ({"rfprm.toml": "[generator\nn = \n"}, {}, "rfprm.toml is not valid TOML"),
    "toml not utf-8": ({"rfprm.toml": b"n = 3 # caf\xe9\n"}, {}, "rfprm.toml line 1 is not UTF-8"),
    "json variable": ({}, {"RFPRM_STRATEGY_PARAMS": "{bad"}, "RFPRM_STRATEGY_PARAMS"),
    "list variable": ({}, {"RFPRM_GENERATOR__STOP": "x"}, '\'["A", "B"]\''),
    "secret list variable": ({}, {"RFPRM_SERVE__API_KEYS": CANARY}, "RFPRM_SERVE__API_KEYS"),
    "singular api key": ({}, {"RFPRM_SERVE__API_KEY": CANARY}, "did you mean 'serve.api_keys'"),
    "bad value beside a secret": (
        {},
        {
            "RFPRM_GENERATOR__API_KEY": CANARY,
            "RFPRM_GENERATOR__TEMPERATURE": "-1",
            "RFPRM_GENERATOR__BASE_URL": f"http://user:{CANARY}@host/v1",
        },
        "RFPRM_GENERATOR__TEMPERATURE",
    ),
    "secret in a wrong-typed field": ({}, {"RFPRM_N": CANARY}, "RFPRM_N"),
    "malformed .env line of ours": ({".env": "RFPRM_N 3\n"}, {}, ".env line 1"),
    "config path missing": ({}, {"RFPRM_CONFIG": "nowhere.toml"}, "RFPRM_CONFIG"),
    "top-level typo": ({}, {"RFPRM_NN": "3"}, "unknown setting 'nn'"),
}
SETTINGS_COMMANDS = ["solve", "bench", "serve", "score", "eval-prm"]  # the commands that read settings


@pytest.mark.parametrize("case", SETTINGS_CASES)
@pytest.mark.parametrize("command", SETTINGS_COMMANDS)
def test_bad_settings_in_every_source(tmp_path, command, case):
    files, env, named = SETTINGS_CASES[case]
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    given = valid_input(tmp_path, command)
    before = digest(tmp_path)
    line = assert_one_error_line(rfprm(call(command, given, tmp_path / "out"), tmp_path, env))
    assert named in line
    assert digest(tmp_path) == before


def test_settings_commands_are_the_ones_that_read_settings():
    """The rest must not read settings at all: a broken rfprm.toml does not stop them."""
    assert set(SETTINGS_COMMANDS) | {"view", "select", "fit-aggregation", "bench report", "bench merge"} == set(CALLS)


def test_a_foreign_env_file_changes_nothing(app):
    """An app's .env (foreign keys, a malformed line, secrets) is none of our business."""
    done = rfprm(["solve", QUESTION, "-n", "1", "--max-tokens", "16", "--json"], app)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] is not None or json.loads(done.stdout)["candidates"]
    assert CANARY not in done.stdout + done.stderr


# ------------------------------------------------------------------ Ctrl-C and a second writer


def score_input(folder: Path, rows: int) -> Path:
    path = folder / "many.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": QUESTION, "response": RIGHT}) + "\n" for i in range(rows)))
    return path


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    return subprocess.Popen(
        [sys.executable, "-m", "rfprm_tts.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_ctrl_c_during_score_keeps_the_rows_and_resumes(app):
    source = score_input(app, 3000)
    out = app / "scored.jsonl"
    run = start(["score", str(source), "-o", str(out), "--chunk-rows", "8"], app)
    wait_for(lambda: lines_in(out) >= 16)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    line = assert_one_error_line(
        subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr), code=130, starts="interrupted: "
    )
    saved = lines_in(out)
    assert f"{saved} rows saved in {out}" in line and "rerun the same command" in line
    done = rfprm(["score", str(source), "-o", str(out)], app)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert ids == list(range(3000))  # no row twice, none missing


def test_a_second_run_on_the_same_output_is_refused(app):
    source = score_input(app, 3000)
    out = app / "scored.jsonl"
    first = start(["score", str(source), "-o", str(out), "--chunk-rows", "8"], app)
    try:
        wait_for(lambda: lines_in(out) >= 8)
        line = assert_one_error_line(rfprm(["score", str(source), "-o", str(out)], app))
        assert f"process {first.pid}" in line
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert ids == list(range(len(ids)))  # only the first run wrote


def test_two_bench_runs_on_one_folder(app):
    data = app / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"Compute {i} + 7 * 3.", "answer": str(i + 21)}) + "\n" for i in range(40))
    )
    args = [
        "bench",
        "--dataset",
        str(data),
        "--out",
        str(app / "run"),
        "--strategies",
        "best_of_n",
        "--budgets",
        "1",
        "--max-tokens",
        "24",
        "--concurrency",
        "1",
        "--base-url",
        f"http://user:{CANARY}@127.0.0.1:9/v1",
    ]
    first = start(args, app, {"RFPRM_GENERATOR__API_KEY": CANARY, "RFPRM_PRM__API_KEY": CANARY})
    try:
        wait_for(lambda: lines_in(app / "run" / "rows.jsonl") >= 1)
        line = assert_one_error_line(rfprm(args, app))
        assert f"process {first.pid}" in line
    finally:
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=120)
    assert_one_error_line(
        subprocess.CompletedProcess(first.args, first.returncode, stdout, stderr), code=130, starts="interrupted: "
    )
    for written in (app / "run").iterdir():  # run.json records the settings and the command: no secret
        assert CANARY not in written.read_text(errors="replace"), written
    assert "user:***@127.0.0.1" in (app / "run" / "run.json").read_text()


def test_ctrl_c_while_solving_or_serving(app):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts the request, never answers: the solve waits
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        run = start(["solve", QUESTION, "--backend", "openai", "--base-url", url, "-n", "1"], app)
        time.sleep(4)  # importing, loading the PRM or waiting for the upstream: never done by now
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    assert_one_error_line(
        subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr), code=130, starts="interrupted"
    )
    serve = start(["serve", "--port", "0"], app)
    time.sleep(4)
    serve.send_signal(signal.SIGINT)
    _, stderr = serve.communicate(timeout=60)
    # uvicorn shuts down (its log says so) and ends as Ctrl-C ended it: 0, or killed by SIGINT as shells expect
    assert "Traceback" not in stderr and serve.returncode in (0, 130, -signal.SIGINT), stderr


# ------------------------------------------------------------------ a full disk, a read-only folder


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 64 KiB file system (tmpfs), so writes really fail with ENOSPC or EROFS."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_one_line_and_keeps_whole_rows(app, small_disk):
    source = score_input(app, 400)
    out = small_disk / "scored.jsonl"
    line = assert_one_error_line(rfprm(["score", str(source), "-o", str(out), "--chunk-rows", "8"], app))
    assert "No space left on device" in line and "rerun the same command" in line
    whole = out.read_bytes()[: out.read_bytes().rfind(b"\n") + 1].decode().splitlines()
    assert 0 < len(whole) < 400
    assert [json.loads(x)["id"] for x in whole] == list(range(len(whole)))  # a torn tail at most, cut on resume


def test_a_read_only_folder_is_refused_before_any_work(app, small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for args in (
        ["score", str(score_input(app, 2)), "-o", str(small_disk / "x.jsonl")],
        ["bench", "--dataset", "demo", "--out", str(small_disk / "run")],
        ["view", str(Path(__file__).parents[1] / "data" / "solve_result.json"), "-o", str(small_disk / "x.html")],
    ):
        line = assert_one_error_line(rfprm(args, app))
        assert f"cannot write in {small_disk}" in line


# ------------------------------------------------------------------ ordinary mistakes, as typed

MISTAKES = {
    "a question that is not text": ([b"solve", b"caf\xe9 \xff?"], "lone surrogate"),
    "a PRM name one letter off": (["solve", QUESTION, "--prm", "demo2"], "did you mean 'demo'"),
    "a model folder that is not a model": (["solve", QUESTION, "--model", "{EMPTY}"], "config.json"),
    "cuda on a CPU-only torch": (["score", "{SCORED}", "-o", "out.jsonl", "--device", "cuda"], "cuda"),
    "an aggregation that does not exist": (["solve", QUESTION, "--aggregation", "nope"], "must be one of last, min"),
    "a beam search at an N it cannot run": (["solve", QUESTION, "--strategy", "beam_search", "-n", "6"], "beam_width"),
    "an unknown command": (["sovle", QUESTION], "invalid choice: 'sovle'"),
    "a strategy one letter off": (["solve", QUESTION, "--strategy", "beam_serch"], "did you mean 'beam_search'"),
    "a parameter one letter off": (
        ["solve", QUESTION, "--strategy", "beam_search", "-n", "4", "--param", "beam_widht=2"],
        "did you mean 'beam_width'",
    ),
    "a restart onto the input": (["score", "{SCORED}", "-o", "{SCORED}", "--restart"], "would destroy the input"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_ordinary_mistakes_are_one_line(app, mistake):
    args, named = MISTAKES[mistake]
    (app / "empty-model").mkdir()
    scored = score_input(app, 2)
    before = digest(app)
    filled = [
        a.replace("{EMPTY}", str(app / "empty-model")).replace("{SCORED}", str(scored)) if isinstance(a, str) else a
        for a in args
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    done = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"rfprm_tts.cli", *map(os.fsencode, filled)],
        cwd=app,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if mistake == "cuda on a CPU-only torch":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    assert named in assert_one_error_line(done)
    assert digest(app) == before


def test_param_values_are_json_and_verbose_solve_logs_progress(app):
    done = rfprm(
        [
            "solve",
            QUESTION,
            "--strategy",
            "beam_search",
            "-n",
            "4",
            "--param",
            "beam_width=2",
            "--param",
            "max_steps=[3]",
            "--max-tokens",
            "24",
            "-v",
        ],
        app,
    )
    assert_one_error_line(done)  # a list reached the strategy as a list: its own validation answers
    assert "max_steps" in done.stderr
    done = rfprm(
        [
            "solve",
            QUESTION,
            "--strategy",
            "beam_search",
            "-n",
            "4",
            "--param",
            "beam_width=2",
            "--max-tokens",
            "24",
            "-v",
        ],
        app,
        {"RFPRM_GENERATOR__API_KEY": CANARY, "RFPRM_PRM__API_KEY": CANARY},
    )
    assert done.returncode == 0, done.stderr
    assert CANARY not in done.stdout + done.stderr  # the logs at INFO hold no key either
    assert "round 1 generate:" in done.stderr and "round 1 score:" in done.stderr


def test_solve_from_a_plain_script_in_an_app_folder(app):
    """The library reads the same settings: an app's .env must not break `solve()`."""
    script = app / "app.py"
    script.write_text(
        f"from rfprm_tts import solve\nprint(solve({QUESTION!r}, n=1, generator__max_tokens=16).usage.generator_calls)\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=app, env=clean, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert CANARY not in done.stdout + done.stderr


def test_serve_on_a_taken_port_is_one_line(app):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = assert_one_error_line(rfprm(["serve", "--port", str(port)], app, timeout=120))
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_a_row_no_tokenizer_can_encode_is_an_error_row_and_kept_as_given(app):
    source = app / "mixed.jsonl"
    bad = '{"id": 0, "question": "\\ud800 what?", "response": "1 + 1 = 2"}'  # raw JSON can carry a lone surrogate
    source.write_text(bad + "\n" + json.dumps({"id": 1, "question": QUESTION, "response": RIGHT}) + "\n")
    done = rfprm(["score", str(source), "-o", "out.jsonl"], app)
    assert done.returncode == 0, done.stderr
    first, second = [json.loads(x) for x in (app / "out.jsonl").read_text().splitlines()]
    assert first["question"] == json.loads(bad)["question"]  # the user's text, unchanged
    assert "lone surrogate" in first["rfprm"]["error"] and "step_scores" in second["rfprm"]


def test_a_dataset_inside_the_run_folder_is_refused_before_anything_is_written(app):
    """The run would append its rows to the dataset itself (a user's review found it)."""
    (app / "run").mkdir()
    data = app / "run" / "rows.jsonl"
    data.write_text(
        json.dumps({"question": QUESTION, "answer": "33", "problem_id": "a", "strategy": "s", "n": 1}) + "\n"
    )
    before = digest(app)
    line = assert_one_error_line(
        rfprm(["bench", "--dataset", str(data), "--out", str(app / "run"), "--budgets", "1"], app)
    )
    assert "inside the output folder" in line and digest(app) == before


@pytest.mark.parametrize(
    "args, named",
    [
        (["bench", "--dataset", "demo", "--out", "r", "--concurrency", "0"], "--concurrency: must be at least 1"),
        (["score", "x.jsonl", "-o", "y.jsonl", "--alpha", "nan"], "--alpha: must be a finite number"),
        (["solve", QUESTION, "--temperature", "inf"], "--temperature: must be a finite number"),
        (["bench", "reprot", "r"], "did you mean 'rfprm bench report'"),
        (["bench", "merge", "m", "nosuchdir"], "nosuchdir is not a folder"),
        (["solve", QUESTION, "--model", ""], "generator.model"),
    ],
)
def test_values_that_would_hang_or_poison_a_run(app, args, named):
    assert named in assert_one_error_line(rfprm(args, app))


def test_a_password_in_a_url_is_masked_in_errors_and_rows(app):
    url = f"http://user:{CANARY}@127.0.0.1:9/v1"
    line = assert_one_error_line(rfprm(["solve", QUESTION, "--backend", "openai", "--base-url", url, "-n", "1"], app))
    assert "http://user:***@127.0.0.1:9/v1" in line
    done = rfprm(
        [
            "bench",
            "--dataset",
            "demo",
            "--limit",
            "1",
            "--budgets",
            "1",
            "--strategies",
            "best_of_n",
            "--backend",
            "openai",
            "--base-url",
            url,
            "--out",
            str(app / "run"),
        ],
        app,
    )
    assert CANARY not in done.stdout + done.stderr
    for written in (app / "run").iterdir():
        assert CANARY not in written.read_text(errors="replace"), written
