"""All configuration: one pydantic-settings model (model.py) made of sections (sections.py),
read from the environment, `.env` and `rfprm.toml` with each value's source kept (sources.py)."""

from rfprm_tts.settings.model import SIDE_MODELS, Settings, SideRole, without_passwords
from rfprm_tts.settings.sections import (
    PER_SOLVE_FIELDS,
    Aggregation,
    GeneratorSettings,
    HTTPSettings,
    PRMSettings,
    RouteSettings,
    Sampling,
    ServeSettings,
    VLLMSettings,
)

__all__ = [
    "PER_SOLVE_FIELDS",
    "SIDE_MODELS",
    "Aggregation",
    "GeneratorSettings",
    "HTTPSettings",
    "PRMSettings",
    "RouteSettings",
    "Sampling",
    "ServeSettings",
    "Settings",
    "SideRole",
    "VLLMSettings",
    "without_passwords",
]
