"""The bundled demo world: a generator and a PRM that run on a CPU with no download.

Until the trained demo world is bundled, `demo` resolves to a *plumbing demo*: a tiny
random-weight generator/PRM pair built at first use into the user cache. It exercises every
code path of a real solve, but its answers are noise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Role = Literal["generator", "prm"]
DEMO_NAME = "demo"
PLUMBING_VERSION = "plumbing-v1"


def cache_dir() -> Path:
    root = os.environ.get("RFPRM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "rfprm_tts"
    )
    return Path(root)


def resolve_model(name: str, role: Role) -> str:
    """A model name or path as loaders take it; 'demo' becomes the demo world's `role` model."""
    if name != DEMO_NAME:
        return name
    return str(plumbing_demo_dir() / role)


def plumbing_demo_dir() -> Path:
    """Build the plumbing demo once (a second or two) and reuse it."""
    from rfprm_tts.demo.tiny import build_tiny_generator, build_tiny_prm

    root = cache_dir() / PLUMBING_VERSION
    done = root / "complete"
    if not done.exists():
        log.warning(
            "building the plumbing demo in %s: random weights, so answers are noise "
            "(the trained demo world is not bundled yet)", root,
        )
        build_tiny_generator(root / "generator", seed=0)
        build_tiny_prm(root / "prm", seed=1)
        done.touch()
    return root
