"""The model names the proxy answers to, and what each one runs.

The default route is `serve.model_name` with the server's own settings. Each entry of
`serve.routes` is one more name: the server's settings with the route's changes (its generator,
PRM, strategy, N, parameters, budget). A request's `model` picks the route; no `model` is the
default route; any other name is a 404 `model_not_found`, as OpenAI answers, unless
`serve.passthrough_models` is on: then the default route runs with its upstream asked for that
model by name.

`RouteTable` holds the names and their settings, worked out when the server starts so a mistake
in a route is one line before any model loads. The service (service.py) holds the solvers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from rfprm_tts.errors import ConfigError
from rfprm_tts.serve.errors import APIError
from rfprm_tts.settings import RouteSettings, Settings
from rfprm_tts.strategies.base import build_strategy, settings_n, uses_draft

MAX_PASSED_THROUGH = 64  # distinct passed-through names whose settings are kept (least recently used dropped)


def route_settings(settings: Settings, name: str, route: RouteSettings) -> Settings:
    """The server's settings with the route's changes; a mistake is a ConfigError naming the route."""
    changes: dict[str, Any] = {f"generator__{key}": value for key, value in route.generator.items()}
    changes |= {f"prm__{key}": value for key, value in route.prm.items()}
    changes |= {f"draft__{key}": value for key, value in route.draft.items()}
    changes |= {f"selector__{key}": value for key, value in route.selector.items()}
    params = {**settings.strategy_params, **route.strategy_params}
    if route.token_budget is not None:
        params["token_budget"] = route.token_budget
    changes |= {"strategy_params": params}
    if route.strategy is not None:
        changes["strategy"] = route.strategy
    if route.n is not None:
        changes["n"] = route.n
    try:
        routed = settings.with_overrides(**changes)
        check_runs(routed)
    except ConfigError as exc:
        raise ConfigError(f"serve.routes.{name}: {exc}") from None
    return routed


def check_runs(settings: Settings) -> None:
    """The strategy can be built as configured, has the draft model it asks for, and its
    budget is within the server's limit."""
    # as a request builds it: the parameters this strategy takes, of those configured for many
    strategy = build_strategy(settings.strategy, settings.strategy_params, n=settings_n(settings))
    if uses_draft(strategy) and settings.draft is None:
        raise ConfigError(
            f"its strategy {settings.strategy!r} asks a draft model for steps, and none is set: give it a draft "
            "(draft.model, and draft.base_url where it is served)"
        )
    budget, limit = strategy.params.token_budget, settings.serve.max_token_budget
    if budget is not None and limit is not None and budget > limit:
        raise ConfigError(
            f"its token budget {budget} is over serve.max_token_budget ({limit}); lower the budget or raise the limit"
        )
    if strategy.params.n > settings.serve.max_n:
        raise ConfigError(
            f"its n={strategy.params.n} is over serve.max_n ({settings.serve.max_n}), so no request could run it; "
            "lower n (-n, RFPRM_N, the route's n) or raise serve.max_n (--max-n)"
        )


class RouteTable:
    """Model name -> the settings its requests run with (see the module's docstring)."""

    def __init__(self, settings: Settings):
        serve = settings.serve
        self.default = serve.model_name
        if self.default in serve.routes:
            raise ConfigError(
                f"serve.routes.{self.default}: the name is already serve.model_name (the default route); "
                "rename the route or set another serve.model_name"
            )
        if serve.passthrough_models and settings.generator.backend != "openai":
            raise ConfigError(
                "serve.passthrough_models asks an upstream for models by name: it needs generator.backend = "
                f"'openai', not {settings.generator.backend!r}"
            )
        try:
            check_runs(settings)
        except ConfigError as exc:
            raise ConfigError(f"the default route ({self.default}): {exc}") from None
        self.routes = {self.default: settings} | {
            name: route_settings(settings, name, route) for name, route in serve.routes.items()
        }
        self.passthrough = serve.passthrough_models
        self._passed: OrderedDict[str, Settings] = OrderedDict()
        self._passing = threading.Lock()  # big bodies are parsed on worker threads

    @property
    def names(self) -> list[str]:
        """The names /v1/models lists: the default route first."""
        return list(self.routes)

    def settings(self, model: str | None) -> Settings:
        """The settings of the route `model` names (None: the default route); a 404
        model_not_found for a name that is no route (unless passed through)."""
        if model is None:
            return self.routes[self.default]
        if model in self.routes:
            return self.routes[model]
        if not self.passthrough:
            raise self.not_found(model)
        with self._passing:
            passed = self._passed.get(model)
            if passed is None:
                passed = self._passed[model] = self.routes[self.default].with_overrides(generator__model=model)
                if len(self._passed) > MAX_PASSED_THROUGH:
                    self._passed.popitem(last=False)
            else:
                self._passed.move_to_end(model)
            return passed

    def is_passed_through(self, model: str) -> bool:
        return model not in self.routes

    def check(self, model: str) -> None:
        """A 404 for a name this proxy does not serve (GET /v1/models/{model})."""
        if model not in self.routes and not self.passthrough:
            raise self.not_found(model)

    def not_found(self, model: str) -> APIError:
        served = ", ".join(repr(name) for name in self.routes)
        return APIError(
            404,
            f"the model {model[:200]!r} does not exist here: this proxy serves {served} (GET /v1/models); "
            f"send model={self.default!r} (the upstream model is the server's generator.model)",
            "invalid_request_error",
            "model_not_found",
            param="model",
        )
