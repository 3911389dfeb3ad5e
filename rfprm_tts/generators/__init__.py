"""Generator backends. `build_generator(settings)` picks one from `GeneratorSettings.backend`."""

from rfprm_tts.generators.base import Completion, GenerationRequest, GenerationResult, Generator
from rfprm_tts.generators.loading import build_generator, build_side

__all__ = [
    "Completion",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "build_generator",
    "build_side",
]
