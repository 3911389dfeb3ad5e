"""Many questions at once in one asyncio program, the way a web app serves them: one solver
(models loaded once), many concurrent `await solver.asolve(...)`.

Runs as is with the bundled demo world; set RFPRM_* environment variables (see quickstart.py)
for real models. With an OpenAI-compatible backend the requests of all questions are in flight
together (generator.max_concurrency bounds them); in-process backends batch what arrives together.
"""

import asyncio
import time

from rfprm_tts import ReasoningSolver

QUESTIONS = [
    f"Compute {a} + {b} * {c}." for a, b, c in [(3, 4, 5), (12, 7, 2), (9, 9, 9), (20, 6, 3), (5, 8, 7), (11, 2, 4)]
]


async def answer(solver: ReasoningSolver, question: str) -> str:
    result = await solver.asolve(question, n=4)  # per-solve settings: n, strategy, sampling...
    return f"{question:<24} -> {result.answer} ({result.usage.wall_time_s:.2f} s)"


async def main() -> None:
    async with ReasoningSolver() as solver:  # settings from the environment / rfprm.toml
        started = time.perf_counter()
        lines = await asyncio.gather(*(answer(solver, q) for q in QUESTIONS))
        print("\n".join(lines))
        print(f"{len(QUESTIONS)} questions concurrently in {time.perf_counter() - started:.2f} s")


asyncio.run(main())
