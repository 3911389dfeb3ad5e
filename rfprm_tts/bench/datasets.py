"""Benchmark problems: a question, its gold answer, and a stable id.

A dataset is named (`math500`, `aime24`, `aime25`, `amc23`, `gsm8k`, `gpqa_diamond`: read from
`<name>.jsonl` in a data directory when one is given, else from the Hugging Face hub with
`datasets`; `demo`: the demo world's held-out set) or is a local JSONL path, with a field
mapping for files whose fields are named otherwise.

GPQA-Diamond is multiple choice: each question's four choices are shuffled with a seed (the
`choice_seed` and the record's id, so a run is reproducible and the order is in the question
text), lettered A-D, and the gold answer is the correct choice's letter; such a problem keeps
its `choices`, and graders compare letters. It is gated on the hub: log in with a token that
has accepted its terms, or give a local copy with the hub's fields.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from rfprm_tts.errors import ConfigError
from rfprm_tts.runtime.files import read_jsonl


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()  # multiple choice: the choices as lettered A, B, ... (answer: a letter)


@dataclass(frozen=True)
class Source:
    """Where a named dataset lives and how its fields map to a Problem's."""

    hub: str
    split: str
    file: str
    fields: dict[str, str] = field(default_factory=dict)
    config: str | None = None
    multiple_choice: bool = False


SOURCES = {
    "math500": Source("HuggingFaceH4/MATH-500", "test", "math500.jsonl", {"id": "unique_id", "question": "problem"}),
    "aime24": Source("HuggingFaceH4/aime_2024", "train", "aime24.jsonl", {"question": "problem"}),
    "aime25": Source("yentinglin/aime_2025", "train", "aime25.jsonl", {"question": "problem"}),
    "amc23": Source("math-ai/amc23", "test", "amc23.jsonl", {"question": "question"}),
    "gsm8k": Source("openai/gsm8k", "test", "gsm8k.jsonl", {"id": "idx"}, config="main"),
    "gpqa_diamond": Source(
        "Idavidrein/gpqa", "train", "gpqa_diamond.jsonl", config="gpqa_diamond", multiple_choice=True
    ),
}
LETTERS = "ABCD"
GPQA_FIELDS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
NAMES = (*SOURCES, "demo", "demo-think")


def gold_answer(value: object) -> str:
    """The gold answer as a string: GSM8K's '... #### 1,234' becomes '1234', a float that is
    an integer (AMC's 27.0) becomes '27'."""
    text = str(value).strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip().replace(",", "")
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    return text


def load_problems(
    name_or_path: str,
    *,
    data_dir: str | Path | None = None,
    fields: dict[str, str] | None = None,
    start: int = 0,
    end: int | None = None,
    limit: int | None = None,
    shuffle_seed: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    choice_seed: int = 0,
) -> list[Problem]:
    """The problems of a dataset, shuffled with a fixed seed if asked, then sliced
    [start:end], cut to `limit`, and of those shard `shard_index` of `num_shards`: problems
    i, i + K, i + 2K, ... (a stride, so hard and easy problems spread evenly over shards).
    `choice_seed` orders a multiple-choice dataset's choices."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(f"shard index {shard_index} of {num_shards} shards: the index must be 0..{num_shards - 1}")
    problems = _read(name_or_path, data_dir, fields or {}, choice_seed)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(problems)
    problems = problems[start:end][:limit]
    if not problems:
        raise ConfigError(f"no problems selected from {name_or_path!r} (start={start}, end={end})")
    shard = problems[shard_index::num_shards]
    if not shard:
        raise ConfigError(
            f"shard {shard_index} of {num_shards} is empty: only {len(problems)} problems; use fewer shards"
        )
    return shard


def _read(
    name_or_path: str, data_dir: str | Path | None, fields: dict[str, str], choice_seed: int = 0
) -> list[Problem]:
    if name_or_path in ("demo", "demo-think"):  # each world's held-out problems
        from rfprm_tts.demo.arithmetic import Difficulty, held_out_problems
        from rfprm_tts.demo.thinking import DIFFICULTY

        difficulty = DIFFICULTY if name_or_path == "demo-think" else Difficulty()
        held_out = held_out_problems(difficulty=difficulty)
        return [Problem(f"{name_or_path}-{i}", p.question, str(p.answer)) for i, p in enumerate(held_out)]
    path = Path(name_or_path)
    if path.suffix == ".jsonl" or path.is_file():
        return _from_rows(_jsonl(path), fields, str(path))
    source = SOURCES.get(name_or_path)
    if source is None:
        return _from_hub(name_or_path, None, "test", fields)
    mapping = {**source.fields, **fields}
    if data_dir is not None:
        local = Path(data_dir) / source.file
        if not local.is_file():
            raise ConfigError(f"{local} does not exist: --data-dir must hold {source.file}")
        rows, where = _jsonl(local), str(local)
    else:
        rows, where = _hub_rows(source.hub, source.config, source.split), source.hub
    if source.multiple_choice:
        return [multiple_choice(row, i, choice_seed, where) for i, row in enumerate(rows)]
    return _from_rows(rows, mapping, where)


def multiple_choice(row: dict, index: int, seed: int, where: str) -> Problem:
    """A GPQA row as a lettered multiple-choice question, its choices shuffled by (seed, id)."""
    missing = [f for f in GPQA_FIELDS if f not in row]
    if missing:
        raise ConfigError(
            f"row {index + 1} of {where} has no field {missing[0]!r}: GPQA rows need {', '.join(GPQA_FIELDS)}"
        )
    ident = str(row.get("Record ID", index))
    choices = [str(row[f]).strip() for f in GPQA_FIELDS[1:]]
    correct = choices[0]
    random.Random(f"{seed}:{ident}").shuffle(choices)
    lettered = "\n".join(f"{letter}) {choice}" for letter, choice in zip(LETTERS, choices))
    question = (
        f"{str(row['Question']).strip()}\n\n{lettered}\n\nAnswer with the letter of the correct choice, in \\boxed{{}}."
    )
    return Problem(ident, question, LETTERS[choices.index(correct)], tuple(choices))


def _jsonl(path: Path) -> list[dict]:
    return read_jsonl(path, "a dataset JSONL file")


def _hub_rows(name: str, config: str | None, split: str) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"{name!r} is a Hugging Face dataset name, and the datasets package is not installed: "
            "pip install 'rfprm-tts[hub]', or give a local .jsonl path (or --data-dir)"
        ) from None
    try:
        return list(datasets.load_dataset(name, config, split=split))
    except Exception as exc:
        raise ConfigError(
            f"cannot load {name!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). Offline, "
            f"point --data-dir at a folder holding {', '.join(s.file for s in SOURCES.values())}, "
            "or pass a local .jsonl path (with --field question=... answer=... if its fields differ). "
            "A gated dataset (GPQA) needs `huggingface-cli login` with a token that accepted its terms."
        ) from None


def _from_hub(name: str, config: str | None, split: str, fields: dict[str, str]) -> list[Problem]:
    return _from_rows(_hub_rows(name, config, split), fields, name)


def _from_rows(rows: list[dict], fields: dict[str, str], where: str) -> list[Problem]:
    question = fields.get("question") or next((k for k in ("question", "problem") if rows and k in rows[0]), "question")
    answer, ident = fields.get("answer", "answer"), fields.get("id", "id")
    problems = []
    for i, row in enumerate(rows):
        missing = [f for f in (question, answer) if f not in row]
        if missing:
            raise ConfigError(
                f"row {i + 1} of {where} has no field {missing[0]!r} (fields: {', '.join(row)}); "
                f"map it with --field {'question' if missing[0] == question else 'answer'}=NAME"
            )
        problems.append(Problem(str(row.get(ident, i)), str(row[question]), gold_answer(row[answer])))
    return problems
