"""The contracts of the PRM side, with no torch in sight.

    Scorer       what the search, the bench and the proxy call: step scores for one question's
                 trajectories (or several questions' at once), the checkpoint's aggregation,
                 the parameter count for FLOPs, close(); optionally a PrefixCache.
    InputFormat  how a question and its steps become token ids, which positions' outputs are
                 read, and how those outputs become step scores (step tag, token-level, scalar).
    Runner       how token ids become those outputs: transformers batched or incremental,
                 vLLM pooling in-process, a pooling server over HTTP.

A Scorer built by `load_prm` is a PRMScorer (prm/scorer.py): one InputFormat and one Runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Steps = Sequence[str]
Request = tuple[str, Sequence[Steps]]  # a question and its trajectories (lists of steps)
Rows = list[list[float]]  # the model's output (probabilities) at each position a format reads


@dataclass
class ScoredBatch:
    """Step scores (one list per trajectory, one score per step; None for a step left
    unscored by the overflow policy), the tokens the PRM ran (padding excluded, counted
    apart), and per trajectory a note saying how an overlong one was scored (else None) and
    the error that kept it from being scored at all (else None; its scores are all None)."""

    step_scores: list[list[float | None]] = field(default_factory=list)
    tokens: int = 0
    padded_tokens: int = 0
    notes: list[str | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)


@runtime_checkable
class PrefixCache(Protocol):
    """A scorer that keeps what it computed for scored prefixes (to run only new tokens)."""

    def release(self, question: str, trajectories: Sequence[Steps]) -> None:
        """The search dropped these trajectories: free what no kept trajectory shares."""
        ...

    def forget(self, question: str) -> None:
        """The question's solve is over: free everything kept for it."""
        ...


@runtime_checkable
class Scorer(Protocol):
    aggregation: str | None  # the aggregation the checkpoint names (config rfprm_aggregation), if any
    num_parameters: int | None  # for FLOP estimates; None when unknown (a remote server)
    prefix_cache: PrefixCache | None
    partial_ok: bool  # False: scores complete answers only (an outcome reward model)
    one_score: bool  # one score per answer (a reward head, an outcome model, confidence): no aggregation

    def score_batch(self, question: str, trajectories: Sequence[Steps]) -> ScoredBatch:
        """Score every step of every trajectory (each a list of step strings) of one question."""
        ...

    def score_many(self, requests: Sequence[Request]) -> list[ScoredBatch]:
        """Several questions' trajectories at once (a server batches concurrent requests)."""
        ...

    def score(self, question: str, trajectories: Sequence[Steps]) -> list[list[float | None]]:
        """Just the step scores of `score_batch`."""
        ...

    def close(self) -> None:
        """Free the model or engine (idempotent)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the checkpoint and "auto" settings resolved to (format, read-out, runner)."""
        ...


class ScorerDefaults:
    """The parts of the Scorer protocol most scorers share; a scorer of your own needs only
    `score_batch` on top of this."""

    aggregation: str | None = None
    num_parameters: int | None = None
    prefix_cache: PrefixCache | None = None
    partial_ok: bool = True
    one_score: bool = False

    def score_batch(self, question: str, trajectories: Sequence[Steps]) -> ScoredBatch:
        return self.score_many([(question, trajectories)])[0]

    def score_many(self, requests: Sequence[Request]) -> list[ScoredBatch]:
        return [self.score_batch(question, trajectories) for question, trajectories in requests]

    def score(self, question: str, trajectories: Sequence[Steps]) -> list[list[float | None]]:
        return self.score_batch(question, trajectories).step_scores

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {}


class InputFormat(Protocol):
    """How a verifier reads a trajectory (ReasonFlux step tags, a token-level PRM, a scalar
    head, ...). `rows` says which positions' outputs a runner must return: every step tag,
    every token, the last token, or the positions the format's own `marks(ids, start)` names;
    `read` turns them into step scores (one per step, or one per trajectory when
    `one_score`). With `prefix_reuse`, a prefix's outputs never change when steps are appended
    and `cuts` gives the token boundaries where a cached prefix may end. Without
    `partial_ok` (an outcome reward model) only complete answers can be scored."""

    tokenizer: Any
    rows: Literal["tags", "all", "last", "marks"]
    tag_id: int | None
    one_score: bool
    prefix_reuse: bool
    partial_ok: bool

    def encode(self, question: str, steps: Steps) -> list[int]: ...

    def answer_start(self, question: str) -> int:
        """Tokens before the first step (the templated question)."""
        ...

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]: ...

    def cuts(self, ids: Sequence[int], start: int) -> list[int]: ...


def positions(fmt: InputFormat, ids: Sequence[int], start: int) -> list[int]:
    """The positions of `ids` whose outputs `fmt` reads (tags after the question, every
    token, the last one, or the format's own marks)."""
    if fmt.rows == "marks":
        return fmt.marks(ids, start)
    if fmt.rows == "all":
        return list(range(len(ids)))
    if fmt.rows == "last":
        return [len(ids) - 1]
    return [p for p in range(start, len(ids)) if ids[p] == fmt.tag_id]


@dataclass
class Forwarded:
    """What a runner gave for a list of inputs: per input its rows (at the positions its
    format reads) and the tokens run for it (a prefix shared with earlier inputs counts once,
    for the first), and the padding run in all."""

    rows: list[Rows]
    tokens: list[int]
    padded_tokens: int = 0


class Runner(Protocol):
    """Runs a model over token inputs and returns the rows their format reads."""

    num_parameters: int | None

    def run(self, fmt: InputFormat, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        """Rows of every input; `questions[i]` is the question of `inputs[i]`."""
        ...

    def close(self) -> None: ...
