"""Device, dtype and batching choices shared by the in-process models (generator and PRM)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from rfprm_tts.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on a GPU and float32 on the CPU (where bf16 matmuls are slow and
    scores should match a float32 reference)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'")
    return value


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
