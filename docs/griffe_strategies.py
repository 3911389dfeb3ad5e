"""A griffe extension for the API reference (mkdocs.yml loads it): `strategies/` at the
repository root installs as `rfprm_tts.strategies` (pyproject.toml's package-dir), which griffe,
finding packages by folder, cannot see in a checkout or an editable install. Once `rfprm_tts`
is loaded, load that folder as its `strategies` subpackage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe


class StrategiesSubpackage(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "rfprm_tts" or "strategies" in pkg.members:
            return  # another package, or a regular install with rfprm_tts/strategies/ in place
        init = Path(str(pkg.filepath)).parent.parent / "strategies" / "__init__.py"
        if init.is_file():
            # griffe has no public call to load a folder under another name: its loader's own one
            pkg.set_member("strategies", loader._load_module("strategies", init, parent=pkg))
