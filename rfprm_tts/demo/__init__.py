"""The bundled demo world: a tiny reasoning model and a tiny ReasonFlux-style PRM, trained
here by `python -m rfprm_tts.demo.train` and shipped inside the package (weights/), so the
default solve runs on a CPU with no download. `demo` is its name wherever a model is named.

The task is multi-step integer arithmetic (rfprm_tts.demo.arithmetic); weights/report.json
holds the quality figures measured when the weights were made.
"""

from __future__ import annotations

from pathlib import Path

from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.model_names import Role

WEIGHTS_DIR = Path(__file__).parent / "weights"


def model_path(role: Role) -> str:
    """The demo world's `role` model: what the model name `demo` resolves to
    (rfprm_tts.runtime.model_names)."""
    path = WEIGHTS_DIR / role
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"the demo world is missing from this installation ({path}); reinstall rfprm-tts, "
            f"or rebuild it with `python -m rfprm_tts.demo.train --out {WEIGHTS_DIR}`"
        )
    return str(path)
