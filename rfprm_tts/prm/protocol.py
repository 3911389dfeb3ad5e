"""The contracts of the PRM side, with no torch in sight.

    Scorer       what the search, the bench and the proxy call: step scores for one question's
                 trajectories (or several questions' at once), the checkpoint's aggregation,
                 the parameter count for FLOPs, close(); optionally a PrefixCache.
    InputFormat  how a question and its steps become token ids, which positions' outputs are
                 read, and how those outputs become step scores (step tag, token-level, scalar).
    Runner       how token ids become those outputs: transformers batched or incremental,
                 vLLM pooling in-process, a pooling server over HTTP.

A Scorer built by `load_prm` is a PRMScorer (prm/scorer.py): one InputFormat and one Runner.
The capabilities are read-only properties, so a plain attribute and a property both fulfil them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Steps = Sequence[str]
Request = tuple[str, Sequence[Steps]]  # a question and its trajectories (lists of steps)
Rows = list[list[float]]  # the model's output (probabilities) at each position a format reads
RowKind = Literal["tags", "all", "last", "marks"]  # which positions' outputs a format reads


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

    def hold(self, question: str) -> None:
        """A solve of the question starts: what is kept for it stays until every solve that
        holds it has forgotten it, and while several do, none frees its prefixes early."""
        ...

    def release(self, question: str, trajectories: Sequence[Steps]) -> None:
        """The search dropped these trajectories: free what no kept trajectory shares."""
        ...

    def forget(self, question: str) -> None:
        """The question's solve is over: free everything kept for it."""
        ...


@runtime_checkable
class Scorer(Protocol):
    @property
    def aggregation(self) -> str | None:
        """The aggregation the checkpoint names (config rfprm_aggregation), if any."""
        ...

    @property
    def num_parameters(self) -> int | None:
        """For FLOP estimates; None when unknown (a remote server)."""
        ...

    @property
    def prefix_cache(self) -> PrefixCache | None:
        """What keeps this scorer's scored prefixes, to release them; None when nothing does."""
        ...

    @property
    def partial_ok(self) -> bool:
        """False: scores complete answers only (an outcome reward model)."""
        ...

    @property
    def one_score(self) -> bool:
        """One score per answer (a reward head, an outcome model, confidence): no aggregation."""
        ...

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


@runtime_checkable
class LogprobScorer(Protocol):
    """A Scorer whose input is each candidate's token log-probabilities, not its steps (the
    generator's confidence): the search hands it those. Only that member, so the runtime check
    of a plug-in scorer reads `score_logprobs` alone."""

    def score_logprobs(self, logprobs: Sequence[Sequence[float] | None]) -> ScoredBatch:
        """One score per candidate; a candidate without log-probabilities goes unscored."""
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
    every token, the last token, or the positions the format's own `marks(ids, start)` names
    (a MarkedFormat); `read` turns them into step scores (one per step, or one per trajectory
    when `one_score`). With `prefix_reuse`, a prefix's outputs never change when steps are
    appended and `cuts` gives the token boundaries where a cached prefix may end. A format
    may also say whether it scores partial answers (a PartialFormat) and which of its
    read-outs it uses (a ReadoutFormat): the members a plug-in format may leave out."""

    @property
    def tokenizer(self) -> Any: ...

    @property
    def rows(self) -> RowKind: ...

    @property
    def tag_id(self) -> int | None:
        """The step tag's token id, for rows "tags"."""
        ...

    @property
    def one_score(self) -> bool: ...

    @property
    def prefix_reuse(self) -> bool: ...

    def encode(self, question: str, steps: Steps) -> list[int]: ...

    def answer_start(self, question: str) -> int:
        """Tokens before the first step (the templated question)."""
        ...

    def read(self, rows: Rows, ids: Sequence[int], start: int) -> list[float]: ...

    def cuts(self, ids: Sequence[int], start: int) -> list[int]: ...


@runtime_checkable
class MarkedFormat(Protocol):
    """An InputFormat whose rows are "marks": it names the positions it reads itself."""

    def marks(self, ids: Sequence[int], start: int) -> list[int]: ...


@runtime_checkable
class PartialFormat(Protocol):
    """An InputFormat that says whether it can score a partial answer; one that does not say can."""

    @property
    def partial_ok(self) -> bool:
        """False: complete answers only (an outcome reward model)."""
        ...


@runtime_checkable
class ReadoutFormat(Protocol):
    """An InputFormat with several read-outs, saying which one it uses (step_tag's "step_tag"
    or "token_min")."""

    @property
    def readout(self) -> str: ...


def positions(fmt: InputFormat, ids: Sequence[int], start: int) -> list[int]:
    """The positions of `ids` whose outputs `fmt` reads (tags after the question, every
    token, the last one, or the format's own marks)."""
    if fmt.rows == "marks":
        if not isinstance(fmt, MarkedFormat):
            raise TypeError(f"{type(fmt).__name__} reads rows 'marks' but has no marks(ids, start)")
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

    @property
    def num_parameters(self) -> int | None: ...

    def run(self, fmt: InputFormat, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        """Rows of every input; `questions[i]` is the question of `inputs[i]`."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class CachingRunner(Runner, Protocol):
    """A runner that keeps what it ran for scored prefixes (the incremental runner): the
    scorer passes the search's hold, release and forget on to it."""

    def hold(self, question: str) -> None:
        """One more solve of the question (see PrefixCache.hold)."""
        ...

    def release(self, fmt: InputFormat, question: str, inputs: Sequence[Sequence[int]]) -> None:
        """Free the prefixes of these inputs that no kept input shares."""
        ...

    def forget(self, question: str) -> None:
        """Free everything kept for the question."""
        ...
