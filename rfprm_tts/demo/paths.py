"""Where the demo worlds' weights are, and what the model names `demo`, `demo-think` and
`demo-draft` resolve to."""

from __future__ import annotations

from pathlib import Path

from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.model_names import Role

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_THINK_DIR = Path(__file__).parent / "weights_think"
WEIGHTS_DRAFT_DIR = Path(__file__).parent / "weights_draft"


def model_path(role: Role) -> str:
    """The demo world's `role` model: what the model name `demo` resolves to
    (rfprm_tts.runtime.model_names)."""
    return _weights("demo", WEIGHTS_DIR, role, "")


def think_model_path(role: Role) -> str:
    """The demo-think world's `role` model (it thinks in <think> before answering): what the
    model name `demo-think` resolves to."""
    return _weights("demo-think", WEIGHTS_THINK_DIR, role, "--world think ")


def draft_model_path(role: Role) -> str:
    """demo-draft, a draft model for the demo world's generator (speculative strategies): what
    the model name `demo-draft` resolves to. It is a generator only; its steps are judged by the
    demo world's PRM."""
    if role == "prm":
        raise ConfigError("demo-draft is a draft generator and has no PRM; judge its steps with --prm demo")
    return _weights("demo-draft", WEIGHTS_DRAFT_DIR, role, "--world draft ")


def _weights(world: str, folder: Path, role: Role, train_option: str) -> str:
    path = folder / role
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"the {world} world is missing from this installation ({path}); reinstall rfprm-tts, "
            f"or rebuild it with `python -m rfprm_tts.demo.train {train_option}--out {folder}`"
        )
    return str(path)
