"""Short model names, resolved to what loaders take (a local path or a hub name), and checked
before a loader spends time on them.

A name maps to a function `path(role) -> str`, role being "generator" or "prm", given as
"module:function" and imported only when the name is used, so the real backends never import
the demo world. The bundled `demo`, `demo-think` (`python -m rfprm_tts.demo.train --world think`) and
`demo-draft` (`--world draft`) are listed here; other packages add names through the
entry-point group `rfprm_tts.models`. Any other name or path goes to the loaders unchanged.

    [project.entry-points."rfprm_tts.models"]
    my_world = "my_package.models:path"
"""

from __future__ import annotations

import difflib
import importlib
import json
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

from rfprm_tts.errors import ConfigError, PRMLoadError, RfprmError

Role = Literal["generator", "prm"]
ENTRY_POINT_GROUP = "rfprm_tts.models"
BUILT_IN = {
    "demo": "rfprm_tts.demo.paths:model_path",
    "demo-think": "rfprm_tts.demo.paths:think_model_path",
    "demo-draft": "rfprm_tts.demo.paths:draft_model_path",
}
# Any one of these in a checkpoint folder is a tokenizer transformers can load (fast, BPE,
# WordPiece, SentencePiece, tiktoken).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "tekken.json")
# A checkpoint's weights: one file, or an index that names its shards.
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
# Seconds to wait for the hub to say whether a model exists before calling it unreachable.
HUB_TIMEOUT_S = 10.0


@cache
def registered() -> dict[str, str]:
    """Every short name and its "module:function"."""
    return {**{ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}, **BUILT_IN}


def load_error(role: Role) -> type[RfprmError]:
    """The error a checkpoint that cannot be loaded in `role` raises."""
    return PRMLoadError if role == "prm" else ConfigError


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


def checkpoint_path(name: str, role: Role) -> str:
    """`resolve_model`, checked: a local folder must hold a config and a tokenizer; a near miss
    of a short name (demo2) is refused with the name it likely meant; a hub name must be in the
    local cache or reachable on the hub (a loader would otherwise retry for most of a minute
    without network, then fail with a traceback)."""
    path = resolve_model(name, role)
    local = Path(path).expanduser()
    if local.exists():
        check_folder(local, role)
        return path
    close = difflib.get_close_matches(name, registered(), n=1)
    if "/" not in name and close:
        raise ConfigError(
            f"the {role} model {name!r} is neither a short name nor a local folder; did you mean {close[0]!r}? "
            f"(short names: {', '.join(sorted(registered()))}; a hub model is org/model)"
        )
    check_hub(name, role)
    return path


def check_folder(folder: Path, role: Role) -> None:
    """A checkpoint folder has config.json and a tokenizer (without one, transformers builds
    an empty tokenizer and the model fails later on ids it cannot embed)."""
    error = load_error(role)
    if not folder.is_dir():
        raise error(
            f"the {role} model {folder} is a file, not a checkpoint folder; pass the folder that holds config.json"
        )
    if not (folder / "config.json").is_file():
        raise error(
            f"the {role} model folder {folder} has no config.json, so it is not a transformers checkpoint; "
            "pass the folder that holds the model's config.json, tokenizer and weights"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise error(
            f"the {role} checkpoint {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); copy the "
            "tokenizer files of the model it was trained from into it"
        )


def check_hub(name: str, role: Role) -> None:
    """A hub name is fine when its config is cached; otherwise it needs a download, which
    needs the hub: say so at once when offline mode is on or the hub cannot be reached."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    error = load_error(role)
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise error(
            f"the {role} model {name!r} is not a local folder, a short name ({', '.join(sorted(registered()))}) "
            "or a hub name (org/model); fix the name or the path"
        ) from None
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    needs = (
        f"the {role} model {name!r} was not found locally and would need a download (often several GB) from the "
        "Hugging Face hub"
    )
    if constants.HF_HUB_OFFLINE:
        raise error(
            f"{needs}, but HF_HUB_OFFLINE is set; set HF_HUB_OFFLINE=0 with network access, or pass a local path"
        )
    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError:
        raise error(
            f"the {role} model {name!r} is neither a local folder nor a model on the Hugging Face hub (or it is "
            "private: log in with `hf auth login`); fix the name, or pass a local path"
        ) from None
    except HfHubHTTPError as exc:
        raise error(f"{needs}, which answered {exc.response.status_code}; retry later, or pass a local path") from None
    except Exception as exc:
        raise error(
            f"{needs}, which cannot be reached ({type(exc).__name__}: {exc}); run with network access, or pass a "
            "local path"
        ) from None


def check_weights(folder: str, role: Role) -> None:
    """A checkpoint folder's weights (one file, or every shard its index names) exist and, for
    safetensors, have a readable header: a missing or truncated file is named here, not deep
    inside a loader."""
    from safetensors import SafetensorError, safe_open

    error = load_error(role)
    found = next((Path(folder, name) for name in WEIGHT_FILES if Path(folder, name).is_file()), None)
    if found is None:
        raise error(
            f"the {role} checkpoint {folder} has no weights (none of {', '.join(WEIGHT_FILES)}); copy the model's "
            "weight files into it"
        )
    if found.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(found.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise error(
                f"{found} is not a weight index ({type(exc).__name__}: {exc}); copy it again from the model"
            ) from None
    else:
        shards = [found.name]
    for shard in shards:
        file = Path(folder, shard)
        if not file.is_file():
            raise error(f"{file} is missing ({found.name} lists it); copy every shard of the model into {folder}")
        if file.suffix == ".safetensors":
            try:
                with safe_open(str(file), framework="pt"):
                    pass
            except SafetensorError as exc:
                raise error(
                    f"{file} is not a readable safetensors file ({exc}): truncated or corrupt; download it again"
                ) from None
