"""MkDocs hook: publish the benchmark plots from benchmarks/results/ under results/ in the site.

The plots live beside the tables that produced them; copying them into docs/ would let the two
drift apart, and strict MkDocs refuses links that leave docs/. This hook adds them to the build
as if they were there, so a page links `../results/demo_curves/accuracy_vs_tokens.png`.
"""

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for plot in sorted((BENCHMARKS / "results").rglob("*.png")):
        path = plot.relative_to(BENCHMARKS).as_posix()
        files.append(File(path, str(BENCHMARKS), config["site_dir"], config["use_directory_urls"]))
    return files
