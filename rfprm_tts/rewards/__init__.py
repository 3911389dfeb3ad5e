"""PRM rewards for RL trainers (the ReasonFlux paper's GRPO use): one core that scores a whole
group of completions per call and mixes beta x PRM + (1 - beta) x outcome, and thin adapters
for TRL (`trl.PRMReward`), verl (`verl.compute_score`) and OpenRLHF (an endpoint on
`rfprm serve`)."""

from rfprm_tts.rewards.core import Reward, RewardModel

__all__ = ["Reward", "RewardModel"]
