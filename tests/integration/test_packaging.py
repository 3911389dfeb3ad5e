"""Installation shape: `strategies/` ships as `rfprm_tts.strategies`, never top-level; the
README's commands are the ones CI runs."""

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers.processes import run_fresh_python

ROOT = Path(__file__).resolve().parents[2]


def test_non_editable_install_imports_strategies_inside_the_package(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("rfprm_tts", "strategies"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("rfprm_tts-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rfprm_tts/strategies/best_of_n.py" in names
    assert not any(n.startswith("strategies/") for n in names)
    # pyproject.toml lists the packages by hand: every folder of the package must be in it
    folders = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "rfprm_tts").rglob("__init__.py")}
    shipped = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert folders <= shipped, folders - shipped
    # every bundled world's weights ship (pyproject lists them by pattern), readable by every user
    bundled = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rfprm_tts" / "demo").glob("weights*/**/*.*")}
    assert bundled <= set(names), bundled - set(names)
    modes = {info.filename: info.external_attr >> 16 for info in zipfile.ZipFile(wheel).infolist()}
    unreadable = {name: oct(modes[name]) for name in bundled if modes[name] & 0o444 != 0o444}
    assert not unreadable, unreadable

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import importlib.util, rfprm_tts.strategies as s;"
        "print(s.__file__);"
        "print(importlib.util.find_spec('strategies'))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert out[0].startswith(str(site / "rfprm_tts" / "strategies"))
    assert out[1] == "None"


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line.strip() == "```bash" and i + 1 < len(lines)]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = readme_commands()
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in ci


def test_readme_fits_about_ten_kilobytes():
    """The front page stays short (issue #30: about 10 KB); longer explanations live in
    CONTRIBUTING.md and docs/."""
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 10_000, f"README.md is {size} bytes; move explanations to CONTRIBUTING.md or docs/"


def test_readme_fresh_machine_commands_install_cpu_torch_before_the_project():
    """Plain `torch` from PyPI is the CUDA build: each fresh-machine command takes torch from
    PyTorch's CPU wheel index first, so installing the project finds it and pulls no CUDA."""
    commands = readme_commands()
    assert "rfprm solve" in commands[0], "the README's first command should be the fresh-machine solve"
    for command in (commands[0], next(c for c in commands if "pytest" in c)):
        parts = [shlex.split(part) for part in command.split(" && ")]
        installs = [i for i, words in enumerate(parts) if "pip" in " ".join(words[:3]) and "install" in words]
        torch = [
            i
            for i in installs
            if "https://download.pytorch.org/whl/cpu" in parts[i] and any(w.startswith("torch") for w in parts[i])
        ]
        project = [i for i in installs if any(w == "." or w.startswith(".[") for w in parts[i])]
        assert torch and project, f"no CPU torch or no project install in: {command}"
        assert torch[0] < project[0], f"the project is installed before the CPU torch in: {command}"


def test_every_setting_is_described_in_the_generated_settings_reference():
    """The reference page is generated from the field descriptions, so a field without one would
    print an empty cell: every field says what it does, and its variable is on the page."""
    from rfprm_tts.settings import (
        GeneratorSettings,
        PRMSettings,
        ServeSettings,
        Settings,
        VLLMSettings,
    )

    page = (ROOT / "docs" / "reference" / "settings.md").read_text()
    sections = {
        "RFPRM_": {n: f for n, f in Settings.model_fields.items() if n not in ("generator", "prm", "serve")},
        "RFPRM_GENERATOR__": {n: f for n, f in GeneratorSettings.model_fields.items() if n != "vllm"},
        "RFPRM_GENERATOR__VLLM__": VLLMSettings.model_fields,
        "RFPRM_PRM__": {n: f for n, f in PRMSettings.model_fields.items() if n != "vllm"},
        "RFPRM_SERVE__": ServeSettings.model_fields,
    }
    undescribed = [p + n for p, fields in sections.items() for n, f in fields.items() if len(f.description or "") < 15]
    assert not undescribed, f"settings without a description: {undescribed}"
    absent = [p + n.upper() for p, fields in sections.items() for n in fields if f"`{p}{n.upper()}`" not in page]
    assert not absent, f"settings missing from docs/reference/settings.md: {absent}"


def test_real_backends_depend_on_neither_the_demo_nor_each_other():
    """Model names resolve through rfprm_tts.runtime.model_names and HTTP retries live in
    rfprm_tts.runtime.http_retry: importing the real parts loads neither the demo package nor, for
    the HTTP PRM, the generator backend."""
    code = (
        "import sys\n"
        "import rfprm_tts.prm, rfprm_tts.prm.runners.vllm_pooling, rfprm_tts.generators.transformers, rfprm_tts.generators.vllm\n"
        "from rfprm_tts.runtime.model_names import resolve_model\n"
        "assert 'rfprm_tts.demo' not in sys.modules, 'a real part imported the demo'\n"
        "assert 'rfprm_tts.generators.openai' not in sys.modules, 'the HTTP PRM imported the generator backend'\n"
        "assert resolve_model('some/model', 'prm') == 'some/model'\n"
        "assert resolve_model('demo', 'prm').endswith('prm')  # the demo registers its name\n"
    )
    run_fresh_python(code)
