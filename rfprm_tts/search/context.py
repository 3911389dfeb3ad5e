"""SearchContext: the generator and the PRM as a strategy sees them, with the bookkeeping
done once here (usage, step splitting, aggregation, seeds, the answer's token budget) so
strategies read like pseudo-code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from rfprm_tts.chat import Message, question_of
from rfprm_tts.errors import ConfigError, GenerationError
from rfprm_tts.generators.base import (
    Completion,
    GenerationRequest,
    GenerationResult,
    Generator,
    JSONFormat,
    SideModel,
    SizedGenerator,
    ToolSpec,
)
from rfprm_tts.prm.aggregate import FALLING, aggregate
from rfprm_tts.prm.protocol import LogprobScorer, ScoredBatch, Scorer
from rfprm_tts.prm.verifiers.confidence import confidence
from rfprm_tts.search.budget import BudgetMeter, TokenBudget
from rfprm_tts.search.progress import Progress, ProgressMeter
from rfprm_tts.search.tree import SearchTree
from rfprm_tts.settings import Sampling, SideRole
from rfprm_tts.text import extract_answer
from rfprm_tts.trajectory import Candidate, Model, Role, Trajectory, Usage, Writer

log = logging.getLogger(__name__)


class SearchContext:
    """One question's view of the backends. Every call is counted in `self.usage`.

    `confidence` (read-out, window, weight): with a weight above 0, each candidate's score is
    multiplied by its generator confidence to that power (prm.confidence_weight).

    `budget`: an optional token budget for the whole solve (see `TokenBudget`).
    `on_progress`: called with a `Progress` after every generation round and every PRM call,
    for a caller that shows the search as it runs (`rfprm serve` streams them).
    `tools`: what the model may call, `json_format`: the answer's JSON format; each sample request
    carries them (search/tool_calls.py and search/json_answers.py choose among the samples).
    `side`: the models a strategy may ask besides the generator, by role, each with how it samples
    (generators/side.py): the draft of a speculative strategy (`extend(..., by="draft")`), the
    selector of genselect (`generate(..., by="selector")`); counted apart (usage.draft_*, selector_*).

    `messages` is the conversation the generator sees (system prompt and history included);
    the PRM scores its last user message as the question. `sampling` is how this solve samples:
    `max_tokens` bounds each whole answer (a step-level search gives each step request what the
    answer has left); each sample gets a seed of its own (seed, seed + 1, ...) when `seed` is set.
    """

    def __init__(
        self,
        messages: list[Message],
        generator: Generator,
        scorer: Scorer | None,
        *,
        separator: str,
        aggregation: str | None,
        alpha: float = 1.0,
        sampling: Sampling | None = None,
        confidence: tuple[str, int, float] = ("lowest_group", 2048, 0.0),
        budget: TokenBudget | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        tools: ToolSpec | None = None,
        json_format: JSONFormat | None = None,
        side: Mapping[SideRole, SideModel] | None = None,
    ):
        self.messages = messages
        self.question = question_of(messages)
        self.generator, self.scorer = generator, scorer
        self.side = dict(side or {})
        self.separator, self.aggregation, self.alpha = separator, aggregation, alpha
        self.confidence = confidence
        self.sampling = sampling or Sampling()
        self.usage = Usage()
        self.budget = BudgetMeter(budget, self.usage, self.sampling.max_tokens)
        self.search_tree = SearchTree()
        self.progress = ProgressMeter(self.usage, on_progress)
        self.tools, self.json_format = tools, json_format
        self.prm_failures: list[str] = []  # candidates the PRM could not score (prm.overflow "error")
        self._next_seed = self.sampling.seed
        self._partials: dict[str, Candidate] = {}  # each partial answer handed out, by its text
        self._live: list[Candidate] = []  # scored and not yet released from the PRM's cache
        self._warned_overflow = False
        if scorer is not None and scorer.prefix_cache is not None:
            scorer.prefix_cache.hold(self.question)  # until close(): another solve of it keeps its prefixes

    def parameter_counts(self) -> dict[Model, int | None]:
        """Each model's parameter count, where known: what the usage's FLOPs are estimated from."""
        models: dict[Role, Generator] = {"target": self.generator, **{r: m.generator for r, m in self.side.items()}}
        sizes: dict[Model, int | None] = {
            r: m.num_parameters for r, m in models.items() if isinstance(m, SizedGenerator)
        }
        return {**sizes, "prm": self.scorer.num_parameters if self.scorer is not None else None}

    def next_seeds(self, n: int) -> int | None:
        """The first of n fresh seeds (None without a seed)."""
        if self._next_seed is None:
            return None
        first, self._next_seed = self._next_seed, self._next_seed + n
        return first

    def partial(self, text: str) -> Candidate | None:
        """The candidate a continuation of `text` grows from (None: no answer handed out reads so)."""
        return self._partials.get(text)

    def tokens_left(self, prefix: str) -> int:
        """What the answer's token budget has left after the partial answer `prefix`."""
        partial = self.partial(prefix)
        return self.sampling.max_tokens - (partial.generated_tokens or 0 if partial is not None else 0)

    async def sample(
        self, n: int, prefix: str = "", stop: list[str] | None = None, max_tokens: int | None = None
    ) -> list[Completion]:
        """Up to n completions of the answer (continuing `prefix`), in one request, within what
        the answer's token budget has left (and `max_tokens`). Under a solve's token budget the
        request asks for what the budget affords (`BudgetMeter.affordable`), and none once it is spent:
        fewer than n, or [], come back then. Raises when all of them failed."""
        n = self.budget.affordable(n, max_tokens)
        if n == 0:
            return []
        completions = await self._request(n, prefix, stop, max_tokens)
        self.progress.report("generate", len(completions), open=0, finished=sum(c.error is None for c in completions))
        return completions

    async def continue_each(
        self,
        prefixes: Sequence[str],
        stop: list[str] | None = None,
        max_tokens: Sequence[int] | int | None = None,
        greedy: bool = False,
    ) -> list[Completion]:
        """One continuation of each prefix (requests run concurrently), each within
        `max_tokens` (one limit for all, or one per prefix) and, under a solve's token budget,
        within what it affords: the first prefixes only, [] once it is spent. `greedy`:
        temperature 0, no seed, with log-probabilities (a probe of what the model would answer
        now). A failed continuation keeps its error; raises when all of them failed."""
        limits = list(max_tokens) if isinstance(max_tokens, Sequence) else [max_tokens] * len(prefixes)
        fit = self.budget.affordable(len(prefixes), max(limits, default=None, key=lambda m: m or 0))
        batches = await asyncio.gather(
            *(self._request(1, p, stop, m, greedy=greedy, check=False) for p, m in zip(prefixes[:fit], limits))
        )
        completions = [c for batch in batches for c in batch]
        self.check_failures(completions)
        return completions

    async def _request(
        self,
        n: int,
        prefix: str,
        stop: list[str] | None,
        max_tokens: int | None,
        greedy: bool = False,
        check: bool = True,
        by: Writer = "target",
    ) -> list[Completion]:
        left = min(self.tokens_left(prefix), max_tokens or self.sampling.max_tokens)
        cap = self.budget.cap(left)  # no one sample may outrun what the solve's token budget has left
        update = {"temperature": 0.0, "seed": None, "logprobs": True} if greedy else {"seed": self.next_seeds(n)}
        own = self.side[by].sampling if by in self.side else self.sampling
        sampling = own.model_copy(update={**update, "max_tokens": cap})
        request = GenerationRequest(
            self.messages, n, prefix, stop, sampling=sampling, tools=self.tools, json_format=self.json_format
        )
        result = await self.generate(request, by)
        self.budget.samples_back += sum(c.error is None for c in result.completions)
        if check:
            self.check_failures(result.completions)
        if cap < left:  # the budget set this limit: a sample that reached it is cut short, not an answer
            for c in result.completions:
                if c.error is None and c.finish_reason == "length":
                    c.error = self.budget.cut_note()
        return result.completions

    async def generate(self, request: GenerationRequest, by: Role = "target") -> GenerationResult:
        """One request to the generator, or a side model (`by`), counted in `usage`: every
        generation a search makes goes through here, a judge's rating requests too."""
        if by != "target" and by not in self.side:
            raise ConfigError(f"this search has no {by} model (settings.{by}) to ask")
        generator = self.side[by].generator if by != "target" else self.generator
        result = await generator.generate(request)
        self.usage.count_generation(by, result.prompt_tokens, result.generated_tokens, result.calls)
        return result

    @staticmethod
    def check_failures(completions: Sequence[Completion]) -> None:
        """Raise when every one of `completions` failed (with the first one's error)."""
        errors = [c.error for c in completions if c.error is not None]
        if completions and len(errors) == len(completions):
            raise GenerationError(f"all {len(errors)} samples failed; first error: {errors[0]}")

    async def extend(
        self,
        prefixes: Sequence[str],
        k: int,
        one_step: bool = True,
        max_tokens: int | None = None,
        by: Writer = "target",
        check: bool = True,
    ) -> list[Candidate]:
        """k continuations of every prefix (requests run concurrently), as unscored
        candidates whose text is prefix + continuation, `finish_reason` "partial" when more
        is to come. With `one_step` a continuation stops at the step separator (put back);
        with `max_tokens` it stops after that many tokens (partial when cut there). A prefix
        that has used the answer's whole token budget is not continued: its k children are
        the prefix itself, finished with reason "length". Every prefix gets k children, in
        order; a child's `generated_tokens` and `logprobs` cover the whole answer so far.

        Under a token budget the round is cut to what it affords (`BudgetMeter`): the children
        of the first prefixes only (k each; one prefix's k shrinks), or none once it is spent,
        so a strategy that ranks its prefixes best first spends the last tokens on the best.
        A first round of steps goes whole, each step given an equal share of the budget.
        `by`: the model that writes the continuations, the generator ("target") or the draft.
        `check` off: a request whose samples all failed gives failed children, not an error."""
        stop = [self.separator] if one_step else None
        share = self.budget.first_round_share(len(prefixes) * k) if one_step else None
        if share is not None:  # a step that reaches its share is cut there, and grown on later
            max_tokens = min(max_tokens or share, share)
        else:
            fit = self.budget.affordable(len(prefixes) * k, max_tokens)
            if len(prefixes) == 1:
                k = fit
            prefixes = prefixes[: max(1, fit // k) if fit else 0]
        growing = [i for i, p in enumerate(prefixes) if self.tokens_left(p) > 0]
        # by position, not by text: equal prefixes (DVTS's subtrees all start from the
        # question) each get their own k samples
        requests = (self._request(k, prefixes[i], stop, max_tokens, check=check, by=by) for i in growing)
        batches = dict(zip(growing, await asyncio.gather(*requests)))
        children = []
        for i, prefix in enumerate(prefixes):
            known = self._partials.get(prefix)
            parent = known or Candidate(trajectory=self.trajectory(""), generated_tokens=0)
            if i not in batches:
                children += [
                    self.search_tree.add(parent.model_copy(update={"finish_reason": "length"}, deep=True), known)
                    for _ in range(k)
                ]
                continue
            for c in batches[i]:
                if c.error is not None:
                    children.append(self.candidate(c, known))
                    continue
                at_separator = one_step and self._stopped_at_separator(c)
                # cut by the chunk limit (more to come), not by the answer's budget (finished)
                cut = c.finish_reason == "length" and max_tokens is not None and max_tokens < self.tokens_left(prefix)
                child = Candidate(
                    trajectory=self.trajectory(prefix + c.text + (self.separator if at_separator else "")),
                    finish_reason="partial" if at_separator or cut else c.finish_reason,
                    generated_tokens=(parent.generated_tokens or 0) + (c.tokens or 0),
                    tokens_estimated=parent.tokens_estimated or c.tokens_estimated,
                    logprobs=None if c.logprobs is None else [*(parent.logprobs or []), *c.logprobs],
                )
                if "draft" in self.side:  # a speculative search: who wrote each step
                    new_steps = len(child.trajectory.steps) - len(parent.trajectory.steps)
                    child.step_models = [*(parent.step_models or []), *[by] * new_steps]
                self._partials.setdefault(child.trajectory.text, child)  # a repeat grows from the first
                children.append(self.search_tree.add(child, known))
        if batches:
            self.progress.report(
                "generate",
                len(children),
                open=sum(c.state == "open" for c in children),
                finished=sum(c.state == "finished" for c in children),
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

    async def score(
        self, trajectories: Sequence[Trajectory], logprobs: Sequence[list[float] | None] = ()
    ) -> ScoredBatch:
        """PRM step scores of each trajectory (one PRM call for the whole batch); a verifier
        that reads the generator's token log-probabilities (prm.format 'confidence') gets
        `logprobs`, one list per trajectory."""
        if self.scorer is None:
            raise ConfigError("this solve has no PRM: its strategy says uses_prm = False, yet it asked for scores")
        if isinstance(self.scorer, LogprobScorer):
            batch = self.scorer.score_logprobs(list(logprobs) or [None] * len(trajectories))
        else:
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

    async def keep(self, kept: Sequence[Candidate]) -> None:
        """The search goes on with `kept` only: everything scored since the last keep (the
        previous round's kept ones, which `kept` continue, included) that is not kept is
        released from a PRM that caches prefixes (not a repeat of a kept one: that is its prefix too)."""
        kept_texts = {c.trajectory.text for c in kept}
        self._partials.update({c.trajectory.text: c for c in kept})  # a repeat grows from what was kept
        dropped = [c for c in self._live if c.trajectory.text not in kept_texts]
        self._live = list(kept)
        cache = self.scorer.prefix_cache if self.scorer is not None else None
        trajectories = [c.trajectory.step_texts for c in dropped if c.trajectory.steps]
        if cache is not None and trajectories:
            await asyncio.to_thread(cache.release, self.question, trajectories)

    async def close(self) -> None:
        """The solve is over: a PRM that caches prefixes frees this question's."""
        cache = self.scorer.prefix_cache if self.scorer is not None else None
        if cache is not None:
            await asyncio.to_thread(cache.forget, self.question)

    def aggregate(self, trajectory: Trajectory, step_scores: Sequence[float | None]) -> float | None:
        """The candidate's score: its step scores aggregated, or a one-score verifier's score as is."""
        if self.scorer is not None and self.scorer.one_score:
            return step_scores[0] if step_scores else None
        if self.aggregation is None:
            raise ConfigError("this solve has no aggregation (prm.aggregation) to turn step scores into one score")
        return aggregate(step_scores, self.aggregation, self.alpha, answer_step=trajectory.ends_with_answer_step)

    def may_still_win(self, partial: Candidate, finished: Sequence[Candidate]) -> bool:
        """Can `partial`, grown on, still outrank every finished candidate? Not when the
        aggregation only falls as steps are added (min, prod) and it already scores no
        higher than the best finished one: it could never be the answer, so a search stops
        growing it (DVTS's answer is then the same; beam search may run more rounds with the
        beams it kept, and its answer scores at least as high). This is the bound that keeps
        beam search from spending max_steps x N steps on beams that ramble and never finish."""
        if self.aggregation not in FALLING or self.confidence[2] > 0:  # a confidence factor may rise
            return True
        best = max((c.score for c in finished if c.ok and c.score is not None), default=None)
        return best is None or (partial.score is not None and partial.score > best)

    def candidate(self, completion: Completion, parent: Candidate | None = None) -> Candidate:
        """An unscored candidate for a complete sample (of the question, or after `parent`)."""
        return self.search_tree.add(
            Candidate(
                trajectory=self.trajectory(completion.text),
                finish_reason=completion.finish_reason,
                generated_tokens=completion.tokens,
                tokens_estimated=completion.tokens_estimated,
                logprobs=completion.logprobs,
                token_logprobs=completion.token_logprobs if parent is None else None,  # a whole sample's only
                tool_calls=completion.tool_calls,
                error=completion.error,
            ),
            parent,
        )

    async def evaluate(self, completions: Sequence[Completion]) -> list[Candidate]:
        """Candidates for complete samples: cut into steps, PRM-scored, aggregated.
        Failed samples stay in the list, unscored, with their error."""
        return await self.score_candidates([self.candidate(c) for c in completions])

    async def score_candidates(self, candidates: list[Candidate]) -> list[Candidate]:
        """PRM-score (in one call) every candidate that has steps; returns the same list.
        A candidate the PRM cannot score (longer than its context, prm.overflow "error")
        fails alone, with the reason in `error` and `prm_note`; the rest go on."""
        scorable = [c for c in candidates if c.ok and c.trajectory.steps]
        if (
            self.scorer is not None
            and not self.scorer.partial_ok
            and any(c.finish_reason == "partial" for c in scorable)
        ):
            raise ConfigError(
                "the verifier scores complete answers only (an outcome reward model) and this strategy scores "
                "partial ones: use best_of_n or weighted_best_of_n, or a process reward model"
            )
        self._live += scorable
        if scorable:
            batch = await self.score([c.trajectory for c in scorable], [c.logprobs for c in scorable])
            unknown = [None] * len(scorable)
            readout, window, weight = self.confidence
            for candidate, scores, note, error in zip(
                scorable, batch.step_scores, batch.notes or unknown, batch.errors or unknown
            ):
                candidate.step_scores = scores
                candidate.score = self.aggregate(candidate.trajectory, scores)
                if weight and candidate.score is not None and candidate.logprobs:
                    candidate.score *= confidence(candidate.logprobs, readout, window) ** weight
                candidate.prm_note = note or error
                if error is not None:
                    candidate.error = f"the PRM could not score it: {error}"
                    self.prm_failures.append(error)
            self.progress.saw_scores([c.score for c in scorable if c.state == "finished"])
            self.progress.report("score", len(scorable), open=sum(c.state == "open" for c in scorable))
        return candidates
