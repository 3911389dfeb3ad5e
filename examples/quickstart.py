"""Quickstart: solve one question with PRM-guided Best-of-N and look at what came back.

Runs as is on a fresh machine: with no settings, rfprm-tts uses the bundled demo-think world (a
tiny arithmetic model that thinks before it answers, and its PRM, on the CPU). For real models, set the environment first, e.g.

    export RFPRM_GENERATOR__BACKEND=openai
    export RFPRM_GENERATOR__BASE_URL=http://127.0.0.1:8000/v1      # a vLLM server, a hosted API
    export RFPRM_GENERATOR__MODEL=Qwen/Qwen2.5-Math-7B-Instruct
    export RFPRM_PRM__MODEL=/models/ReasonFlux-PRM-7B               # GPU if present
    python examples/quickstart.py
"""

from rfprm_tts import solve

# settings from env / rfprm.toml, plus overrides; the seed makes the samples repeatable (drop it to vary)
result = solve("Compute 8 + 6 - 3.", n=8, generator__seed=0)

print("Answer:", result.answer)
print(f"Chosen trajectory (score {result.best.score:.3f}), PRM score per step:")
for step, score in zip(result.best.trajectory.steps, result.best.step_scores):
    print(f"  {score:.3f}  {step.text}")
print(result.usage)  # prompt/generated/PRM tokens, calls, wall time, FLOPs

with open("result.json", "w") as f:  # everything is JSON-serialisable
    f.write(result.model_dump_json(indent=2))
print("Wrote result.json")
