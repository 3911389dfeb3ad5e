"""Short model names, resolved to what loaders take (a local path or a hub name).

A name maps to a function `path(role) -> str`, role being "generator" or "prm", given as
"module:function" and imported only when the name is used, so the real backends never import
the demo world. The bundled `demo` is listed here; other packages add names through the
entry-point group `rfprm_tts.models`. Any other name or path goes to the loaders unchanged.

    [project.entry-points."rfprm_tts.models"]
    my_world = "my_package.models:path"
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

from rfprm_tts.errors import ConfigError

Role = Literal["generator", "prm"]
ENTRY_POINT_GROUP = "rfprm_tts.models"
BUILT_IN = {"demo": "rfprm_tts.demo:model_path"}


@cache
def registered() -> dict[str, str]:
    """Every short name and its "module:function"."""
    return {**{ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}, **BUILT_IN}


def resolve_model(name: str, role: Role) -> str:
    """The path (or hub name) a loader takes for `name` in `role`."""
    target = registered().get(name)
    if target is None:
        if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
            raise ConfigError(
                f"the {role} model {name!r} is a local path that does not exist; fix the path, or give a "
                f"hub name (org/model) or a short name ({', '.join(sorted(registered()))})"
            )
        return name
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(role)
