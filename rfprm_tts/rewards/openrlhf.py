"""OpenRLHF: its remote reward request, as `rfprm serve` answers it at /v1/rewards/openrlhf
(checked against OpenRLHF 0.11.2's SingleTurnAgentExecutor: `--reward.remote_url` POSTs
`{"query": [prompt + response], "prompts": [prompt], "labels": [label]}` and reads
`rewards`, `scores` and `extra_logs`).

The query is the templated prompt and the response, special tokens included: the response
is what follows the prompt, without end-of-turn tokens; the question is the prompt's last user
message (ChatML and Llama 3 templates), else the prompt as it is.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rfprm_tts.rewards.core import RewardModel

END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")
USER_TURNS = (
    re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.S),
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S),
)


class OpenRLHFRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[Any] | None = None


def split_query(query: str, prompt: str | None) -> tuple[str, str]:
    """(question, response) of one OpenRLHF query."""
    response = query[len(prompt) :] if prompt and query.startswith(prompt) else query
    for token in END_TOKENS:
        response = response.replace(token, "")
    source = prompt if prompt else query
    for turn in USER_TURNS:
        if found := turn.findall(source):
            return found[-1].strip(), response.strip()
    return source.strip(), response.strip()


def answer(request: OpenRLHFRequest, model: RewardModel) -> dict[str, Any]:
    prompts: list[str | None] = [*request.prompts] if request.prompts else [None] * len(request.query)
    labels = request.labels or [None] * len(request.query)
    if not len(prompts) == len(labels) == len(request.query):
        raise ValueError(f"{len(request.query)} queries, {len(prompts)} prompts and {len(labels)} labels")
    pairs = [split_query(q, p) for q, p in zip(request.query, prompts)]
    rewards = model.rewards(
        [q for q, _ in pairs], [r for _, r in pairs], [None if x is None else str(x) for x in labels]
    )
    values = [0.0 if r.reward is None else r.reward for r in rewards]
    return {
        "rewards": values,
        "scores": values,
        "extra_logs": {
            "prm": [r.prm if r.prm is not None else 0.0 for r in rewards],
            "outcome": [r.outcome if r.outcome is not None else 0.0 for r in rewards],
            "prm_fallback": [float(r.fallback is not None) for r in rewards],
            "outcome_unchecked": [float(r.unchecked) for r in rewards],
        },
    }
