"""SearchContext: the generator and the PRM as a strategy sees them, with the bookkeeping
done once here (usage, step splitting, aggregation) so strategies read like pseudo-code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from rfprm_tts.errors import GenerationError
from rfprm_tts.generators.base import Completion, GenerationRequest, Generator
from rfprm_tts.prm.aggregate import aggregate
from rfprm_tts.prm.base import ScoredBatch, Scorer
from rfprm_tts.text import extract_answer
from rfprm_tts.trajectory import Candidate, Trajectory, Usage

log = logging.getLogger(__name__)


class SearchContext:
    """One question's view of the backends. Every call is counted in `self.usage`."""

    def __init__(
        self,
        question: str,
        generator: Generator,
        scorer: Scorer,
        *,
        separator: str,
        aggregation: str,
        alpha: float = 1.0,
        max_tokens: int | None = None,
    ):
        """`max_tokens` caps every generation request of this search (a proxy client's
        max_tokens); the generator's own setting applies when it is None."""
        self.question = question
        self.max_tokens = max_tokens
        self.generator = generator
        self.scorer = scorer
        self.separator = separator
        self.aggregation = aggregation
        self.alpha = alpha
        self.usage = Usage()
        self._warned_overflow = False

    async def sample(
        self, n: int, prefix: str = "", stop: list[str] | None = None, max_tokens: int | None = None
    ) -> list[Completion]:
        """n completions of the answer (continuing `prefix`). Raises when all of them failed."""
        limits = [m for m in (max_tokens, self.max_tokens) if m is not None]
        request = GenerationRequest(
            self.question, n=n, prefix=prefix, stop=stop, max_tokens=min(limits) if limits else None
        )
        result = await self.generator.generate(request)
        self.usage.prompt_tokens += result.prompt_tokens
        self.usage.generated_tokens += result.generated_tokens
        self.usage.generator_calls += result.calls
        errors = [c.error for c in result.completions if c.error is not None]
        if result.completions and len(errors) == len(result.completions):
            raise GenerationError(f"all {len(errors)} samples failed; first error: {errors[0]}")
        return result.completions

    async def extend(
        self, prefixes: Sequence[str], k: int, one_step: bool = True, max_tokens: int | None = None
    ) -> list[Candidate]:
        """k continuations of every prefix (requests run concurrently), as unscored
        candidates whose text is prefix + continuation, `finish_reason` "partial" when more
        is to come. With `one_step` a continuation stops at the step separator (put back);
        with `max_tokens` it stops after that many tokens (partial when cut there)."""
        stop = [self.separator] if one_step else None
        batches = await asyncio.gather(
            *(self.sample(k, prefix=p, stop=stop, max_tokens=max_tokens) for p in prefixes)
        )
        children = []
        for prefix, completions in zip(prefixes, batches):
            for c in completions:
                if c.error is not None:
                    children.append(self.candidate(c))
                    continue
                at_separator = one_step and self._stopped_at_separator(c)
                partial = at_separator or (max_tokens is not None and c.finish_reason == "length")
                text = prefix + c.text + (self.separator if at_separator else "")
                children.append(
                    Candidate(
                        trajectory=self.trajectory(text),
                        finish_reason="partial" if partial else c.finish_reason,
                        generated_tokens=c.tokens,
                    )
                )
        return children

    def _stopped_at_separator(self, c: Completion) -> bool:
        """Did a one-step continuation end at the step separator (more steps to come)?
        vLLM and the transformers backend say which stop string matched; hosted APIs only say
        "stop", so a continuation that is empty or holds a final answer counts as finished."""
        if c.stop_reason is not None:
            return c.stop_reason == self.separator
        if c.finish_reason != "stop" or not c.text.strip():
            return False
        return extract_answer(c.text) is None

    def trajectory(self, text: str) -> Trajectory:
        return Trajectory.from_response(self.question, text, self.separator)

    async def score(self, trajectories: Sequence[Trajectory]) -> ScoredBatch:
        """PRM step scores of each trajectory (one PRM call for the whole batch)."""
        batch = await asyncio.to_thread(
            self.scorer.score_batch, self.question, [t.step_texts for t in trajectories]
        )
        self.usage.prm_calls += 1
        self.usage.prm_tokens += batch.tokens
        notes = [note for note in batch.notes if note]
        if notes and not self._warned_overflow:
            self._warned_overflow = True
            log.warning("%d trajectories are longer than the PRM's context, e.g. %s", len(notes), notes[0])
        return batch

    async def release(self, candidates: Sequence[Candidate]) -> None:
        """The strategy dropped these candidates: a scorer that caches prefixes may free them."""
        release = getattr(self.scorer, "release", None)
        trajectories = [c.trajectory.step_texts for c in candidates if c.trajectory.steps]
        if release is not None and trajectories:
            await asyncio.to_thread(release, self.question, trajectories)

    async def close(self) -> None:
        """The solve is over: a scorer that caches prefixes frees this question's."""
        forget = getattr(self.scorer, "forget", None)
        if forget is not None:
            await asyncio.to_thread(forget, self.question)

    def aggregate(self, trajectory: Trajectory, step_scores: Sequence[float | None]) -> float | None:
        answer_step = bool(trajectory.steps) and trajectory.steps[-1].part == "answer"
        return aggregate(step_scores, self.aggregation, self.alpha, answer_step=answer_step)

    def candidate(self, completion: Completion) -> Candidate:
        """An unscored candidate for a complete sample."""
        return Candidate(
            trajectory=self.trajectory(completion.text),
            finish_reason=completion.finish_reason,
            generated_tokens=completion.tokens,
            error=completion.error,
        )

    async def evaluate(self, completions: Sequence[Completion]) -> list[Candidate]:
        """Candidates for complete samples: cut into steps, PRM-scored, aggregated.
        Failed samples stay in the list, unscored, with their error."""
        return await self.score_candidates([self.candidate(c) for c in completions])

    async def score_candidates(self, candidates: list[Candidate]) -> list[Candidate]:
        """PRM-score (in one call) every candidate that has steps; returns the same list."""
        scorable = [c for c in candidates if c.ok and c.trajectory.steps]
        if scorable:
            batch = await self.score([c.trajectory for c in scorable])
            for candidate, scores, note in zip(scorable, batch.step_scores, batch.notes or [None] * len(scorable)):
                candidate.step_scores = scores
                candidate.score = self.aggregate(candidate.trajectory, scores)
                candidate.prm_note = note
        return candidates


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best first: scored candidates by score, then unscored, then failed ones."""
    def key(c: Candidate) -> tuple[int, float]:
        if not c.ok:
            return (2, 0.0)
        return (0, -c.score) if c.score is not None else (1, 0.0)

    return sorted(candidates, key=key)
