"""The documentation site: its generated reference pages are current, it builds with
`mkdocs build --strict` (a broken link or a missing API object fails), and every Python block
marked runnable runs as a plain script, as a reader would paste it (the bundled demo world:
no GPU, no key).

A block is runnable when the line before its fence is `<!-- runnable -->` (invisible on the site)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNNABLE = re.compile(r"^<!-- runnable -->\n```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def user_env() -> dict[str, str]:
    """The environment of a reader with no rfprm settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFPRM_", "OPENAI_"))}
    return {**env, "PYTHONUNBUFFERED": "1", "NO_MKDOCS_2_WARNING": "1"}


def runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in RUNNABLE.finditer(text):
            line = text.count("\n", 0, match.start(1)) + 1
            blocks.append((f"{page.relative_to(ROOT).as_posix()}:{line}", match.group(1)))
    return blocks


BLOCKS = runnable_blocks()


def test_generated_reference_pages_are_current():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "docs_reference.py"), "--check"],
        cwd=ROOT,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_cli_reference_fills_every_placeholder_and_lists_top_level_options():
    """Help texts such as `search strategy: {strategies}` are filled in when --help shows them;
    the generated page must show the names too, and `rfprm --version`."""
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    left = re.findall(r"\{[A-Za-z_][A-Za-z0-9_]*\}", page)
    assert not left, f"unfilled placeholders in docs/reference/cli.md: {sorted(set(left))}"
    assert "| `--version` |" in page
    assert "search strategy: adaptive\\_vote, beam\\_search, best\\_of\\_n" in page


def test_the_check_names_a_stale_page(tmp_path, monkeypatch):
    """--check fails, naming the file, when a committed page is not what the code gives."""
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "scripts" / "docs_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "REFERENCE", tmp_path / "docs" / "reference")
    assert module.main([]) == 0  # writes both pages into the temporary tree
    assert module.main(["--check"]) == 0
    page = tmp_path / "docs" / "reference" / "cli.md"
    page.write_text(page.read_text().replace("| `--json` |", "| `--jsn` |", 1))
    assert module.main(["--check"]) == 1


def test_site_builds_strictly(tmp_path):
    assert importlib.util.find_spec("mkdocs"), "the docs extra is missing: pip install -e '.[docs]'"
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    for page in ("index.html", "reference/settings.html", "reference/cli.html", "reference/api.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "api.html").read_text(encoding="utf-8")
    for name in (
        "rfprm_tts.solver.ReasoningSolver",
        "rfprm_tts.prm.protocol.Scorer",
        "rfprm_tts.strategies.base.BaseStrategy",
    ):
        assert f'id="{name}"' in api, f"{name} is not documented on the API page"
    # Images on every page resolve in the built site (the results page's plots come from
    # benchmarks/results/ through docs/hooks.py; strict mode does not check <img> sources).
    images = 0
    for page in site.rglob("*.html"):
        for source in re.findall(r'<img[^>]* src="([^"]+)"', page.read_text(encoding="utf-8")):
            if source.startswith(("http:", "https:", "data:")):
                continue
            images += 1
            assert (page.parent / source).resolve().is_file(), f"{page.relative_to(site)} shows a missing {source}"
    assert images >= 7, f"only {images} images in the site: the results page should show its plots"


def test_docs_have_runnable_blocks():
    assert len(BLOCKS) >= 3, f"expected the pages' runnable examples, found {[where for where, _ in BLOCKS]}"


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[where for where, _ in BLOCKS])
def test_runnable_block_runs_as_a_script(code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
