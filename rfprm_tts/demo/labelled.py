"""A ProcessBench-style file from the demo world, for `rfprm eval-prm`: the demo generator's
own samples on held-out problems, each labelled with its first wrong step by the arithmetic
grader (exact labels: the grader knows every correct next step). With `--problem-set fitting`,
problems apart from both test sets, to fit a learned aggregation on (`rfprm score`, then
`rfprm fit-aggregation --correct-field final_answer_correct`).

    python -m rfprm_tts.demo.labelled --out rfprm_tts/demo/processbench_demo.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from rfprm_tts.demo import model_path
from rfprm_tts.demo.arithmetic import Problem, fitting_problems, grade, held_out_problems
from rfprm_tts.demo.quality import sample_texts
from rfprm_tts.text import split_steps


def labelled_rows(problems: Sequence[Problem], texts: Sequence[Sequence[str]], subset: str = "demo") -> list[dict]:
    """One row per sampled answer with steps: ProcessBench's fields (id, problem, steps,
    label = index of the first wrong step or -1, final_answer_correct) and the subset."""
    rows = []
    for p, answers in enumerate(zip(problems, texts)):
        problem, samples = answers
        for k, text in enumerate(samples):
            steps = split_steps(text)
            if not steps:
                continue
            verdict = grade(problem, steps)
            label = next((i for i, ok in enumerate(verdict.step_correct) if not ok), -1)
            rows.append(
                {
                    "id": f"{subset}-{p}-{k}",
                    "problem": problem.question,
                    "steps": steps,
                    "label": label,
                    "final_answer_correct": verdict.answer_correct,
                    "subset": subset,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSONL to write")
    parser.add_argument("--problems", type=int, default=50, help="how many problems")
    parser.add_argument(
        "--problem-set", choices=["held_out", "fitting"], default="held_out", help="the test set, or problems to fit on"
    )
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per problem")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path("generator"))
    model = AutoModelForCausalLM.from_pretrained(model_path("generator"), dtype=torch.float32).eval()
    problems = (held_out_problems if args.problem_set == "held_out" else fitting_problems)(args.problems)
    torch.manual_seed(args.seed)
    texts = sample_texts(model, tokenizer, [p.question for p in problems], n=args.samples, temperature=args.temperature)
    rows = labelled_rows(problems, texts)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    wrong = sum(r["label"] != -1 for r in rows)
    print(f"wrote {len(rows)} answers ({wrong} with a wrong step, {len(rows) - wrong} without) to {args.out}")


if __name__ == "__main__":
    main()
