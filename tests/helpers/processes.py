"""Running code the way a user does: in a fresh interpreter, or the `rfprm` command."""

from __future__ import annotations

import os
import subprocess
import sys


def run_fresh_python(code: str, timeout: float = 300) -> None:
    """Run `code` in a new interpreter (nothing imported yet); it must exit 0."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr


def rfprm(*args: str, cwd, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`rfprm ARGS` in `cwd`, without the developer's RFPRM_ variables; `stdin` is its input,
    `env` more variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "rfprm_tts.cli", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
