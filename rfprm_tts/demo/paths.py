"""Where the demo world's weights are, and what the model name `demo` resolves to."""

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
