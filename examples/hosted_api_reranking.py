"""PRM reranking around an OpenAI-compatible endpoint: a hosted API, a vLLM server, a router.

    export OPENAI_BASE_URL=https://your-provider.example/v1   # the endpoint
    export OPENAI_API_KEY=...                                  # its key (never printed)
    export OPENAI_MODEL=your-model                             # the model to sample from
    export RFPRM_PRM__MODEL=/models/ReasonFlux-PRM-7B          # the PRM (default: the demo PRM)
    export SYSTEM_PROMPT="Please reason step by step, and put your final answer within \\boxed{}."
    python examples/hosted_api_reranking.py "What is 17 * 23?"

Without OPENAI_BASE_URL, a stand-in endpoint starts on this machine (`rfprm serve` on the
demo world, answering one sample per request), so the example runs as is.
"""

import os
import sys
from contextlib import nullcontext

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.serve import serving

question = sys.argv[1] if len(sys.argv) > 1 else "Compute 12 + 7 * 3."
base_url = os.environ.get("OPENAI_BASE_URL")
stand_in = Settings.load(strategy="majority_vote", n=1, serve={"port": 0})

with nullcontext(base_url) if base_url else serving(stand_in) as root:
    settings = Settings.load(
        generator={
            "backend": "openai",
            "base_url": base_url or f"{root}/v1",
            "api_key": os.environ.get("OPENAI_API_KEY"),
            "model": os.environ.get("OPENAI_MODEL", "rfprm"),
            # The demo model was trained with this one; Qwen2.5-Math wants the one above.
            "system_prompt": os.environ.get("SYSTEM_PROMPT", "Solve step by step."),
            "temperature": 0.8,
            "max_tokens": 512,
        },
        n=8,
        strategy="weighted_best_of_n",  # vote over equivalent answers, weighted by PRM score
    )
    with ReasoningSolver(settings) as solver:
        result = solver.solve(question)

print("Question:", question)
print("Answer:", result.answer)
for rank, candidate in enumerate(result.candidates[:4], 1):
    score = "failed" if candidate.score is None else f"{candidate.score:.3f}"
    print(f"  #{rank} score {score}  answer {candidate.answer}")
u = result.usage
print(f"Usage: {u.generated_tokens} generated tokens in {u.generator_calls} request(s), {u.prm_tokens} PRM tokens")
