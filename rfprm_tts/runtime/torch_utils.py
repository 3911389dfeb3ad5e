"""Device, dtype, checked loading and batching shared by the in-process models (generator and PRM)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.model_names import Role, check_weights, load_error

T = TypeVar("T")
R = TypeVar("R")


def pick_device(device: str, setting: str) -> torch.device:
    """The torch device for `device`, refused when this machine cannot run it (a CUDA device
    on a CPU-only torch would otherwise fail deep inside the first `.to()`); `setting` is
    the option the user changes, e.g. "prm.device"."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown {setting} {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{setting} is {device!r} but this torch ({torch.__version__}) sees no CUDA GPU; set {setting} "
            "to 'cpu' or 'auto', or install a CUDA build of torch on a machine with a GPU"
        )
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise ConfigError(
            f"{setting} is {device!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s); "
            f"use 'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}'"
        )
    return chosen


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on a GPU and float32 on the CPU (where bf16 matmuls are slow and
    scores should match a float32 reference)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'")
    return value


BAR_WORTHY_BYTES = 1 << 30  # a local checkpoint smaller than this loads in about a second: no bar


@contextmanager
def _quiet_transformers(path: str) -> Iterator[None]:
    """Mute transformers' warnings while loading: its load report (a table of missing and
    unexpected weights) is turned into one error by `load_checked`. Its "Loading weights" bar
    shows only for a checkpoint worth watching (not a local one under BAR_WORTHY_BYTES, such
    as the bundled demo worlds, whose bar was noise on every first solve)."""
    from transformers.utils import logging

    level, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    if bar and os.path.isdir(path) and _weight_bytes(path) < BAR_WORTHY_BYTES:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bar:
            logging.enable_progress_bar()


def _weight_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.suffix in (".safetensors", ".bin", ".pt"))


def attention_fix(reason: str) -> str | None:
    """What to do when prm.attention cannot run (None: the error is not about attention)."""
    if "flash" in reason.lower():
        return "install flash-attn, or set prm.attention to 'sdpa' or 'flex_attention'"
    if "flex" in reason.lower():
        return "set prm.attention to 'sdpa' (this torch or model cannot run flex_attention)"
    if "attention" in reason.lower() or "attn" in reason.lower():
        return "set prm.attention to 'auto'"
    return None


def load_checked(
    load: Callable[..., Any], path: str, role: Role, *, unused: tuple[str, ...] = (), **kwargs: Any
) -> Any:
    """`load(path, **kwargs)` (a `from_pretrained`), refused unless every weight of the model
    came from the checkpoint and every weight of the checkpoint went into the model (a
    config naming another architecture than the weights' loads with random weights and
    writes garbage). `unused` are prefixes of checkpoint weights the caller knows it does not
    use (e.g. "v_head." when only the decoder body is loaded)."""
    error = load_error(role)
    if os.path.isdir(path):
        check_weights(path, role)
    with _quiet_transformers(path):
        try:
            model, info = load(path, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
            fix = attention_fix(reason) if role == "prm" else None
            if fix is None:
                fix = "install what it names" if isinstance(exc, ImportError) else "check the checkpoint's files"
            raise error(f"cannot load the {role} weights from {path} ({reason}); {fix}") from None
    problems = []
    if info["mismatched_keys"]:
        key, stored, expected = sorted(info["mismatched_keys"])[0]
        problems.append(
            f"{len(info['mismatched_keys'])} weights of the wrong shape (e.g. {key}: {tuple(stored)} in the "
            f"checkpoint, {tuple(expected)} in the config's model)"
        )
    if info["missing_keys"]:
        problems.append(f"{len(info['missing_keys'])} weights missing (e.g. {sorted(info['missing_keys'])[0]})")
    unexpected = sorted(key for key in info["unexpected_keys"] if not key.startswith(unused))
    if unexpected:
        problems.append(f"{len(unexpected)} weights the model does not have (e.g. {unexpected[0]})")
    if problems:
        raise error(
            f"the {role} checkpoint {path} does not match its config.json ({type(model).__name__}): "
            f"{', '.join(problems)}; fix config.json (architectures, model_type, sizes) to describe these weights"
        )
    return model


def right_pad(batch: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as one right-padded tensor and its attention mask, on `device`."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def length_batches(lengths: Sequence[int], max_rows: int, max_tokens: int, spread: float = 1.1) -> list[list[int]]:
    """Indices of sequences grouped into padded batches: sorted by length, each batch at most
    `max_rows` rows and `max_tokens` tokens padding included, and its longest sequence at
    most `spread` times its shortest (so padding stays under ~10%). A sequence longer than
    `max_tokens` gets a batch of its own."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        batch = batches[-1] if batches else []
        if (
            batch
            and len(batch) < max_rows
            and (len(batch) + 1) * lengths[i] <= max_tokens
            and lengths[i] <= spread * lengths[batch[0]]
        ):
            batch.append(i)
        else:
            batches.append([i])
    return batches


def run_grouped(items: Sequence[T], groups: Sequence[Sequence[int]], run: Callable[[list[T]], list[R]]) -> list[R]:
    """`run` over each group of items (groups hold indices into `items`, e.g. from
    length_batches); the results come back in the items' order."""
    results: list = [None] * len(items)
    for group in groups:
        for i, result in zip(group, run([items[i] for i in group])):
            results[i] = result
    return results


def padding(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> int:
    """Pad tokens that right-padded `batches` (of indices into `lengths`) run."""
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def packed_rows(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of sequences packed end to end into rows of at most `max_tokens` tokens
    (first fit, longest first; a longer sequence gets a row of its own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(max_tokens - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows
