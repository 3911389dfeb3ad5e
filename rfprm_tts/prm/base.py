"""The scorer protocol: what every PRM implementation provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rfprm_tts.errors import PRMInputTooLongError, RfprmError
from rfprm_tts.prm.overflow import Piece, plan


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
class Scorer(Protocol):
    def score_batch(self, question: str, trajectories: Sequence[Sequence[str]]) -> ScoredBatch:
        """Score every step of every trajectory (each a list of step strings) of one question."""
        ...

    def score(self, question: str, trajectories: Sequence[Sequence[str]]) -> list[list[float | None]]:
        """Just the step scores of `score_batch`."""
        ...


@dataclass
class Forwarded:
    """What the model gave for a list of inputs: per input its scores (one per step, or one
    per trajectory for a one-score PRM) and the tokens run for it (a prefix shared with
    earlier inputs counts once, for the first), and the padding run in all."""

    scores: list[list[float]]
    tokens: list[int]
    padded_tokens: int = 0


Request = tuple[str, Sequence[Sequence[str]]]  # a question and its trajectories (lists of steps)


class BatchScorer:
    """What the scorer implementations share: the overflow policy (prm/overflow.py) and the
    bookkeeping of `score_batch`. A subclass says how a trajectory becomes token ids
    (`encode`) and how a list of inputs becomes scores (`forward_inputs`)."""

    tokenizer: Any
    max_length: int | None = None
    overflow: str = "error"
    window_overlap: int = 2
    one_score: bool = False  # one score per trajectory (ReasonFlux-PRM-1.5B), not one per step
    aggregation: str | None = None  # the checkpoint's own choice (config rfprm_aggregation)

    def encode(self, question: str, steps: Sequence[str]) -> list[int]:
        raise NotImplementedError

    def forward_inputs(self, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        """Scores of token inputs; `questions[i]` is the question of `inputs[i]`."""
        raise NotImplementedError

    def score(self, question: str, trajectories: Sequence[Sequence[str]]) -> list[list[float | None]]:
        return self.score_batch(question, trajectories).step_scores

    def score_batch(self, question: str, trajectories: Sequence[Sequence[str]]) -> ScoredBatch:
        return self.score_many([(question, trajectories)])[0]

    def score_many(self, requests: Sequence[Request]) -> list[ScoredBatch]:
        """Several questions' trajectories in one pass over the model (a server batches the
        requests that arrive together). Padding is reported on the first request."""
        jobs: list[tuple[int, int, Piece]] = []  # request, trajectory, piece
        inputs: list[list[int]] = []
        results = []
        for r, (question, trajectories) in enumerate(requests):
            notes: list[str | None] = []
            errors: list[str | None] = []
            for i, steps in enumerate(trajectories):
                try:
                    pieces, note = self.pieces(question, list(steps)) if steps else ([], None)
                except PRMInputTooLongError as exc:  # this trajectory alone goes unscored
                    pieces, note = [], None
                    errors.append(str(exc))
                else:
                    errors.append(None)
                for piece, ids in pieces:
                    jobs.append((r, i, piece))
                    inputs.append(ids)
                notes.append(note)
            empty = [[None] * (1 if self.one_score else len(steps)) if steps else [] for steps in trajectories]
            results.append(ScoredBatch(empty, 0, 0, notes, errors))
        questions = [requests[r][0] for r, _, _ in jobs]
        done = self.forward_inputs(questions, inputs) if inputs else Forwarded([], [])
        for (r, i, piece), got, tokens in zip(jobs, done.scores, done.tokens):
            results[r].tokens += tokens
            if self.one_score:
                results[r].step_scores[i] = got
                continue
            if len(got) != piece.end - piece.start:
                raise RfprmError(
                    f"the PRM gave {len(got)} step scores for {piece.end - piece.start} steps: the "
                    "step tag must be one token (and, on a vLLM server, its step_tag_id)"
                )
            results[r].step_scores[i][piece.keep : piece.end] = got[piece.keep - piece.start :]
        if results:
            results[0].padded_tokens = done.padded_tokens
        return results

    def pieces(self, question: str, steps: list[str]) -> tuple[list[tuple[Piece, list[int]]], str | None]:
        """The inputs that score one trajectory under the overflow policy, each with its token
        ids. Step token counts are estimated one step at a time, then each piece is checked
        with its real encoding (the budget shrinks by any overshoot)."""
        ids = self.encode(question, steps)
        full = len(ids)
        if self.max_length is None or full <= self.max_length:
            return [(Piece(0, len(steps), 0), ids)], None
        costs = [len(self.tokenizer(s, add_special_tokens=False)["input_ids"]) + 1 for s in steps]
        budget = self.max_length - (full - sum(costs))
        policy = "truncate" if self.one_score and self.overflow == "window" else self.overflow
        for _ in range(8):
            pieces, note = plan(costs, budget, policy, self.window_overlap)
            encoded = [(p, self.encode(question, steps[p.start : p.end])) for p in pieces]
            longest = max((len(e) for _, e in encoded), default=0)
            if longest <= self.max_length:
                return encoded, f"{note} ({full} tokens, context {self.max_length})"
            budget -= longest - self.max_length
        raise PRMInputTooLongError(f"could not fit the trajectory into the PRM context of {self.max_length}")
