"""The target model as the judge of a step (SpecReason, Pan et al. 2025): it reads the question
and the answer so far and rates the last step with one digit, 0 to 9. The rating is read from
its probabilities for that digit, not from the digit it writes: the expected digit under its
top log-probabilities (the digits among them, renormalised), over 9, so 1.0 is a sure 9.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from rfprm_tts.generators.base import Completion, GenerationRequest
from rfprm_tts.search.context import SearchContext

RATE_PROMPT = (
    "{question}\n\nA partial solution:\n\n{answer}\n\n"
    "Rate the last step of this partial solution from 0 (wrong or useless) to 9 (correct and useful). "
    "Reply with one digit."
)
TOP = 5  # the log-probabilities asked for: the most a legacy completions API gives, and most of a judge's mass


async def rate_last_steps(ctx: SearchContext, answers: Sequence[str]) -> list[float | None]:
    """The target's rating of each answer's last step, in [0, 1] (None: no digit among its
    likely next tokens, or the request failed). One greedy one-token request each, concurrent,
    counted as the generator's."""
    sampling = ctx.sampling.model_copy(
        update={"temperature": 0.0, "seed": None, "max_tokens": 1, "logprobs": True, "top_logprobs": TOP}
    )
    requests = [
        GenerationRequest(
            [{"role": "user", "content": RATE_PROMPT.format(question=ctx.question, answer=answer.rstrip())}],
            sampling=sampling,
        )
        for answer in answers
    ]
    results = await asyncio.gather(*(ctx.generate(r) for r in requests))
    return [rating(result.completions[0]) if result.completions else None for result in results]


def rating(completion: Completion) -> float | None:
    """The expected digit under the first token's top log-probabilities, over 9."""
    if completion.error is not None or not completion.token_logprobs:
        return None
    first = completion.token_logprobs[0]
    mass = [0.0] * 10
    for token in first["top_logprobs"] or [first]:
        text = token["token"].strip()
        if len(text) == 1 and text in "0123456789":  # isdigit() takes "²" too
            mass[int(text)] += math.exp(token["logprob"])
    total = sum(mass)
    return sum(digit * p for digit, p in enumerate(mass)) / (9 * total) if total else None
