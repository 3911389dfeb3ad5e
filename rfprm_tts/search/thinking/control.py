"""The knobs of controlled thinking (every sampling strategy takes them), all off by default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rfprm_tts.text import THINK_CLOSE

FORCED_CONTINUATION = "Wait"  # s1's word: what replaces a close that comes too early


class ThinkingControl(BaseModel):
    """Early exit and budget forcing: the knobs of every sampling strategy (all off by default)."""

    model_config = ConfigDict(extra="forbid")
    early_exit: Literal["none", "probe", "confidence", "prm"] = Field(
        "none",
        description="Stop a sample's thinking early: 'probe' once probe_agree answer probes in a row agree; "
        "'confidence' once a probe's mean token probability reaches exit_threshold; 'prm' once the PRM scores "
        "the thinking with the probe's answer at exit_threshold or more; 'none': think to the end.",
    )
    probe_every: int = Field(64, ge=1, description="Thinking tokens between answer probes (and between checks).")
    probe_agree: int = Field(3, ge=1, description="early_exit 'probe': consecutive agreeing probes that stop.")
    probe_tokens: int = Field(16, ge=1, description="Most tokens one probe may generate (greedy).")
    exit_threshold: float = Field(
        0.9, gt=0, le=1, description="early_exit 'confidence' and 'prm': the score at which a sample stops."
    )
    answer_prompt: str = Field(
        "\n</think>\n\nThe answer is \\boxed{",
        description="What closes the thinking to ask for the answer (probes, max_thinking_tokens): write it "
        "as your model ends its own thinking. Must hold </think>.",
    )
    min_thinking_tokens: int = Field(
        0, ge=0, description="A sample that closes its thinking sooner gets 'Wait' instead and thinks on (s1)."
    )
    max_thinking_tokens: int | None = Field(
        None, ge=1, description="Close the thinking here with answer_prompt and take the answer (s1); None: no cap."
    )
    finish_first: int | None = Field(
        None, ge=1, description="Stop every other sample once this many have answers (short-m@k); None: all finish."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ThinkingControl:
        if THINK_CLOSE not in self.answer_prompt:
            raise ValueError(f"answer_prompt must hold {THINK_CLOSE} (it closes the thinking)")
        if self.max_thinking_tokens is not None and self.min_thinking_tokens > self.max_thinking_tokens:
            raise ValueError("min_thinking_tokens is above max_thinking_tokens")
        return self

    @property
    def controls_thinking(self) -> bool:
        """Whether sampling goes through the thinking loop (else: whole samples, as before)."""
        return (
            self.early_exit != "none"
            or self.min_thinking_tokens > 0
            or self.max_thinking_tokens is not None
            or self.finish_first is not None
        )

    @classmethod
    def idle_knobs(cls, params: Mapping[str, object]) -> set[str]:
        """The thinking knobs among a strategy's `params` when they are all off (to leave out of
        what a person reads); none when any is on."""
        knobs = {name: params[name] for name in cls.model_fields if name in params}
        if not knobs or cls.model_validate(knobs).controls_thinking:
            return set()
        return set(knobs)
