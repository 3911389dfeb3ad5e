"""PRMScorer: an input format and a runner, composed into the Scorer protocol.

It owns what every verifier shares: the overflow policy (prm/overflow.py) for trajectories
longer than the PRM's context, per-trajectory errors, token accounting, several questions in
one pass, and the prefix cache of a runner that keeps one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfprm_tts.errors import PRMInputTooLongError, RfprmError
from rfprm_tts.prm.overflow import Piece, plan
from rfprm_tts.prm.protocol import (
    CachingRunner,
    InputFormat,
    PartialFormat,
    ReadoutFormat,
    Request,
    Runner,
    ScoredBatch,
    Steps,
)


class PRMScorer:
    """The Scorer protocol in full, not a ScorerDefaults: `prefix_cache` is a property here,
    and a property may not override that class's settable attribute."""

    def __init__(
        self,
        fmt: InputFormat,
        runner: Runner,
        *,
        max_length: int | None = None,
        overflow: str = "error",
        window_overlap: int = 2,
        aggregation: str | None = None,
        format_name: str | None = None,
    ):
        """`max_length`: the PRM's context (None: unchecked, e.g. a server checks its own);
        `overflow`: what to do past it (error, truncate, window); `aggregation`: the one the
        checkpoint names, if any."""
        self.format = fmt
        self.runner = runner
        self.max_length = max_length
        self.overflow = overflow
        self.window_overlap = window_overlap
        self.aggregation = aggregation
        self.format_name = format_name
        self.num_parameters = runner.num_parameters
        self.partial_ok = fmt.partial_ok if isinstance(fmt, PartialFormat) else True
        self.one_score = fmt.one_score

    @property
    def tokenizer(self) -> Any:
        return self.format.tokenizer

    @property
    def prefix_cache(self) -> PRMScorer | None:
        """Itself when the runner keeps scored prefixes (release/forget reach it), else None."""
        return self if isinstance(self.runner, CachingRunner) else None

    def encode(self, question: str, steps: Steps) -> list[int]:
        return self.format.encode(question, steps)

    def score_batch(self, question: str, trajectories: Sequence[Steps]) -> ScoredBatch:
        return self.score_many([(question, trajectories)])[0]

    def score(self, question: str, trajectories: Sequence[Steps]) -> list[list[float | None]]:
        return self.score_batch(question, trajectories).step_scores

    def score_many(self, requests: Sequence[Request]) -> list[ScoredBatch]:
        """Several questions' trajectories in one pass over the model (a server batches the
        requests that arrive together). Padding is reported on the first request."""
        one_score = self.format.one_score
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
            empty: list[list[float | None]] = [
                [None] * (1 if one_score else len(steps)) if steps else [] for steps in trajectories
            ]
            results.append(ScoredBatch(empty, 0, 0, notes, errors))
        questions = [requests[r][0] for r, _, _ in jobs]
        if inputs:
            done = self.runner.run(self.format, questions, inputs)
            starts = {q: self.format.answer_start(q) for q in set(questions)}
            for (r, i, piece), rows, ids, tokens in zip(jobs, done.rows, inputs, done.tokens):
                got = self.format.read(rows, ids, starts[requests[r][0]])
                results[r].tokens += tokens
                if one_score:
                    results[r].step_scores[i][:] = got
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
        if budget <= 0:  # the question (with the template) fills the context: no step can follow
            raise PRMInputTooLongError(
                f"the question takes {full - sum(costs):,} tokens of the PRM's context of "
                f"{self.max_length:,}, leaving none for the answer's steps; shorten the question"
            )
        policy = "truncate" if self.format.one_score and self.overflow == "window" else self.overflow
        for _ in range(8):
            pieces, note = plan(costs, budget, policy, self.window_overlap)
            encoded = [(p, self.encode(question, steps[p.start : p.end])) for p in pieces]
            longest = max((len(e) for _, e in encoded), default=0)
            if longest <= self.max_length:
                return encoded, f"{note} ({full} tokens, context {self.max_length})"
            budget -= longest - self.max_length
        raise PRMInputTooLongError(f"could not fit the trajectory into the PRM context of {self.max_length}")

    def hold(self, question: str) -> None:
        if isinstance(self.runner, CachingRunner):  # else nothing is kept
            self.runner.hold(question)

    def release(self, question: str, trajectories: Sequence[Steps]) -> None:
        if isinstance(self.runner, CachingRunner):
            inputs = [self.encode(question, steps) for steps in trajectories if steps]
            self.runner.release(self.format, question, inputs)

    def forget(self, question: str) -> None:
        if isinstance(self.runner, CachingRunner):
            self.runner.forget(question)

    def close(self) -> None:
        self.runner.close()

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.format_name,
            "readout": self.format.readout if isinstance(self.format, ReadoutFormat) else None,
            "runner": type(self.runner).__name__,
        }
