"""rfprm-tts: test-time scaling of LLM reasoning with process reward models."""

from rfprm_tts.errors import ConfigError, GenerationError, PRMLoadError, RfprmError
from rfprm_tts.settings import Settings
from rfprm_tts.solver import ReasoningSolver, asolve, solve
from rfprm_tts.trajectory import Candidate, SolveResult, Step, Trajectory, Usage

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "ConfigError",
    "GenerationError",
    "PRMLoadError",
    "ReasoningSolver",
    "RfprmError",
    "Settings",
    "SolveResult",
    "Step",
    "Trajectory",
    "Usage",
    "asolve",
    "solve",
]
