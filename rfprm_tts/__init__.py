"""rfprm-tts: test-time scaling of LLM reasoning with process reward models.

The public names are imported on first use, so `import rfprm_tts.prm` (or the CLI's
`--help`) does not load the generator backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfprm_tts.runtime.lazy import lazy_exports

__version__ = "0.1.0"

_PUBLIC = {
    "ConfigError": "rfprm_tts.errors",
    "GenerationError": "rfprm_tts.errors",
    "PRMLoadError": "rfprm_tts.errors",
    "RfprmError": "rfprm_tts.errors",
    "Settings": "rfprm_tts.settings",
    "ReasoningSolver": "rfprm_tts.solver",
    "asolve": "rfprm_tts.solver",
    "solve": "rfprm_tts.solver",
    "Candidate": "rfprm_tts.trajectory",
    "SolveResult": "rfprm_tts.trajectory",
    "Step": "rfprm_tts.trajectory",
    "Trajectory": "rfprm_tts.trajectory",
    "Usage": "rfprm_tts.trajectory",
    "Progress": "rfprm_tts.search.progress",
    "ToolSpec": "rfprm_tts.generators.base",
    "JSONFormat": "rfprm_tts.generators.base",
}

__all__ = [
    "Candidate",
    "ConfigError",
    "GenerationError",
    "JSONFormat",
    "PRMLoadError",
    "Progress",
    "ReasoningSolver",
    "RfprmError",
    "Settings",
    "SolveResult",
    "Step",
    "ToolSpec",
    "Trajectory",
    "Usage",
    "asolve",
    "solve",
]

if TYPE_CHECKING:
    from rfprm_tts.errors import ConfigError, GenerationError, PRMLoadError, RfprmError
    from rfprm_tts.generators.base import JSONFormat, ToolSpec
    from rfprm_tts.search.progress import Progress
    from rfprm_tts.settings import Settings
    from rfprm_tts.solver import ReasoningSolver, asolve, solve
    from rfprm_tts.trajectory import Candidate, SolveResult, Step, Trajectory, Usage


__getattr__ = lazy_exports(__name__, _PUBLIC, globals())
