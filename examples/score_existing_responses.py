"""Score responses you already have with the PRM, without generating anything: a reasoning
model's `<think>` trace and a plain step-by-step answer.

Trajectory-aware: a `<think>...</think>` response is scored as its thinking steps followed by
the final answer as one last step, and the `reasonflux` aggregation is the mean thinking-step
score plus alpha x the final answer's score (the ReasonFlux-PRM paper's trajectory reward).
Runs as is with the demo PRM; for ReasonFlux-PRM-7B:
    export RFPRM_PRM__MODEL=/models/ReasonFlux-PRM-7B
"""

import os

from rfprm_tts import Trajectory
from rfprm_tts.prm import aggregate, load_prm

prm = load_prm(os.environ.get("RFPRM_PRM__MODEL", "demo"))  # cuda + bf16 when available, else CPU fp32
question = "Compute 12 + 7 * 3."
responses = {
    "reasoning model": "<think>7 * 3 = 21\n\n12 + 21 = 33</think>\n\nThe answer is \\boxed{33}.",
    "plain, one slip": "7 * 3 = 24\n\n12 + 24 = 36\n\nThe answer is \\boxed{36}.",
}
trajectories = {name: Trajectory.from_response(question, text) for name, text in responses.items()}
batch = prm.score_batch(question, [t.step_texts for t in trajectories.values()])  # one batched call

for (name, trajectory), scores in zip(trajectories.items(), batch.step_scores):
    print(f"{name} (answer {trajectory.answer}):")
    for step, score in zip(trajectory.steps, scores):
        print(f"  {score:.3f}  [{step.part}] {step.text}")
    answer_step = trajectory.ends_with_answer_step
    for method in ("reasonflux", "min", "prod"):
        print(f"  {method}: {aggregate(scores, method, alpha=1.0, answer_step=answer_step):.3f}")
print(f"PRM tokens: {batch.tokens}; the checkpoint's own aggregation: {prm.aggregation or 'reasonflux'}")
