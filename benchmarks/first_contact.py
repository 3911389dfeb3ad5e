"""First contact: what a newcomer's first `rfprm solve` gets from each bundled world, with the
default settings (best_of_n, N = 8, seeds 0 ...), to decide which world is the default.

    python benchmarks/first_contact.py --problems 50

The questions: the README's own, "Compute 1 + 2.", and `--problems` short problems (1 and 2
operations, what people type first; short problems are likely to have been drawn in training: this
measures first contact, not generalisation). A world is scored on every question, inside its task
or not, since a newcomer does not know its limits.
Prints accuracy and median seconds per solve for each world.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.demo.arithmetic import Difficulty, held_out_problems

# the README's and the docs' examples, and the first thing people type
README_QUESTIONS = {
    "Compute 7 + 5 * 3 - 4.": "18",
    "Compute 2 + 3 * 4.": "14",
    "Compute 9 - 2 * 3 + 8.": "11",
    "Compute 2 + 3.": "5",
    "Compute 1 + 2.": "3",
}


def questions(count: int) -> dict[str, str]:
    short = held_out_problems(400, difficulty=Difficulty(min_ops=1, max_ops=2))
    chosen = random.Random(0).sample(short, count)
    return {**README_QUESTIONS, **{p.question: str(p.answer) for p in chosen}}


def operations(question: str) -> int:
    return sum(question.count(op) for op in (" + ", " - ", " * "))


def share(right: list[bool]) -> str:
    return f"{sum(right) / len(right):.2f} of {len(right)}" if right else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=50, help="short held-out problems besides the README's")
    parser.add_argument("--worlds", nargs="+", default=["demo", "demo-think"])
    args = parser.parse_args()
    asked = questions(args.problems)
    print(f"{len(asked)} questions ({len(README_QUESTIONS)} from the docs), best_of_n N = 8, seed 0\n")
    print(
        "| world | accuracy | one operation | two operations | docs questions right | median s per solve |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    for world in args.worlds:
        settings = Settings.load(generator=dict(model=world, seed=0), prm=dict(model=world))
        right, readme, seconds = 0, 0, []
        by_ops: dict[int, list[bool]] = {1: [], 2: []}
        with ReasoningSolver(settings) as solver:
            for question, gold in asked.items():
                started = time.perf_counter()
                answer = solver.solve(question).answer
                seconds.append(time.perf_counter() - started)
                right += answer == gold
                readme += answer == gold and question in README_QUESTIONS
                if question not in README_QUESTIONS:
                    by_ops[operations(question)].append(answer == gold)
        print(
            f"| {world} | {right / len(asked):.2f} | {share(by_ops[1])} | {share(by_ops[2])} | "
            f"{readme} of {len(README_QUESTIONS)} | "
            f"{statistics.median(seconds):.2f} |"
        )


if __name__ == "__main__":
    main()
