"""A real TRL GRPO run of a few steps on the demo world with the PRM reward, as a user writes
it: a plain script (no __main__ guard) in a fresh Python. TRL's own logged reward must be the
mix beta x PRM + (1 - beta) x outcome of the means it logs beside it."""

import json

import pytest

from helpers.processes import run_fresh_python

SCRIPT = """
import json
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from rfprm_tts import Settings
from rfprm_tts.demo import model_path
from rfprm_tts.demo.arithmetic import held_out_problems
from rfprm_tts.rewards import RewardModel
from rfprm_tts.rewards.trl import PRMReward

problems = held_out_problems()[:8]
data = Dataset.from_list([{"prompt": [{"role": "user", "content": p.question}], "answer": str(p.answer)}
                          for p in problems])
args = GRPOConfig(output_dir=OUT, per_device_train_batch_size=4, num_generations=4, max_completion_length=128,
                  max_steps=3, use_cpu=True, report_to=[], logging_steps=1, learning_rate=1e-5,
                  save_strategy="no", seed=0)
trainer = GRPOTrainer(model=model_path("generator"), reward_funcs=[PRMReward(RewardModel(Settings()))],
                      args=args, train_dataset=data)
trainer.train()
with open(OUT + "/history.json", "w") as f:
    json.dump(trainer.state.log_history, f)
"""


def test_grpo_trains_with_the_prm_reward(tmp_path):
    run_fresh_python(f"OUT = {str(tmp_path)!r}\n" + SCRIPT, timeout=600)
    steps = [h for h in json.loads((tmp_path / "history.json").read_text()) if "reward" in h]
    assert len(steps) == 3
    for h in steps:
        assert 0 <= h["rfprm/prm_mean"] <= 1 and 0 <= h["rfprm/outcome_mean"] <= 1 and h["rfprm/prm_fallbacks"] == 0
        assert h["rewards/PRMReward/mean"] == pytest.approx(
            0.75 * h["rfprm/prm_mean"] + 0.25 * h["rfprm/outcome_mean"], abs=1e-4
        )
    assert any(h["rfprm/outcome_mean"] > 0 for h in steps)  # the demo generator solves some
    assert any(h["grad_norm"] > 0 for h in steps)  # the reward moved the model
