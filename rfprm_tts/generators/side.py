"""The models a solver asks besides the generator: the draft of the speculative strategies and
genselect's selector (settings.draft, settings.selector), built on first use and closed by
whoever built them."""

from __future__ import annotations

import threading

from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Generator, SideModel
from rfprm_tts.generators.loading import build_side
from rfprm_tts.settings import Sampling, Settings, SideRole

# What a solve that must have a side model, and has none, is told. The selector may be missing:
# the generator picks then.
REQUIRED = {
    "draft": "a speculative strategy needs a draft model: set draft.model (RFPRM_DRAFT__MODEL, --draft-model), "
    "and draft.backend / draft.base_url where it is served",
}


class SideModels:
    """A solver's draft and selector: the ones it was handed, else built from its settings on
    first use (and closed by `aclose`)."""

    def __init__(self, settings: Settings, given: dict[SideRole, Generator | None]):
        self.settings = settings
        self._models = {role: model for role, model in given.items() if model is not None}
        self._built: list[Generator] = []
        self._lock = threading.Lock()

    def get(self, role: SideRole) -> Generator | None:
        """The `role` model (None: none was given or set). Builds it here on first use."""
        with self._lock:
            section = self.settings.side_model(role)
            if role not in self._models and section is not None:
                if "model" not in section.model_fields_set:  # --selector-temperature alone, say
                    raise ConfigError(
                        f"{role} settings are set but {role}.model is not: name the {role} model "
                        f"({role}.model, RFPRM_{role.upper()}__MODEL, --{role}-model), or leave the {role} keys out"
                    )
                self._models[role] = built = build_side(role, section)
                self._built.append(built)
            return self._models.get(role)

    def loaded(self, roles: list[SideRole]) -> bool:
        """Whether `for_solve(roles, ...)` would build nothing (each model handed in, built, or not set)."""
        return all(role in self._models or self.settings.side_model(role) is None for role in roles)

    def require(self, role: SideRole) -> Generator:
        model = self.get(role)
        if model is None:
            raise ConfigError(REQUIRED.get(role, f"this solve needs a {role} model: set {role}.model"))
        return model

    def for_solve(self, roles: list[SideRole], settings: Settings, sampling: Sampling) -> dict[SideRole, SideModel]:
        """The side models a solve with `settings` asks, each with how it samples: the draft as the
        solve does at the draft's temperature and top_p (stop strings and log-probabilities are
        the solve's), the selector as its own section says."""
        side: dict[SideRole, SideModel] = {}
        for role in roles:
            model = self.require(role) if role in REQUIRED else self.get(role)
            section = settings.side_model(role)
            if model is None:
                continue
            if role == "draft":
                own = {} if section is None else {"temperature": section.temperature, "top_p": section.top_p}
                side[role] = SideModel(model, sampling.model_copy(update=own))
            elif section is not None:
                side[role] = SideModel(model, section.sampling(), section.system_prompt)
            else:  # a selector handed to the solver, with no settings of its own
                side[role] = SideModel(model, sampling)
        return side

    async def aclose(self) -> None:
        """Close the side models built here (not the ones handed in)."""
        for model in self._built:
            await model.aclose()
