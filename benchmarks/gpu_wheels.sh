#!/usr/bin/env bash
# Wheels for benchmarks/gpu_check.py on the device machine (Python 3.12, torch and transformers
# already there, no network): this project, and the runtime dependencies its image lacks, in
# .whl/ (ignored by git; the device tool carries it). Run from the repository root with the
# project's .venv built: each dependency is pinned to the version the tests ran with here.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
rm -rf .whl && mkdir .whl
.venv/bin/pip wheel -q --no-deps -w .whl .
pins=$(.venv/bin/python - <<'PY'
from importlib.metadata import PackageNotFoundError, version
names = ["pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "typing-inspection", "annotated-types",
         "openai", "jiter", "distro", "sniffio", "tenacity", "math-verify", "latex2sympy2-extended",
         "antlr4-python3-runtime"]
for name in names:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        pass
PY
)
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
du -sh .whl && ls .whl
