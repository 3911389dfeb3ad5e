"""The ReasonFlux paper's other two uses of the PRM, in miniature on the demo world (CPU):

    python benchmarks/prm_uses_demo.py selection --seeds 0 1 2 --out benchmarks/results/prm_uses_demo
    python benchmarks/prm_uses_demo.py grpo --seeds 0 1 2 --out benchmarks/results/prm_uses_demo
    python benchmarks/prm_uses_demo.py grpo-weights --seeds 0 --steps 200 --out ...   # do the two differ?

selection: the demo generator samples K answers to each of P training problems (never a
held-out one); the PRM scores them (rfprm_tts.offline.responses, reasonflux aggregation) and the
generator is fine-tuned (TRL SFTTrainer, completion-only loss) on the PRM's top answer per
problem, on a random answer per problem (the same count), and on all of them.
grpo: TRL GRPO from the demo generator with the outcome-only reward (beta 0) and with the
PRM-mixed reward (beta 0.75, rfprm_tts.rewards), the same steps and seed.

Every model is measured the same way: greedy answers to the 200 held-out problems, graded
exactly by the demo's arithmetic grader; the interval is a 95% bootstrap over problems.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts.bench.report import bootstrap_ci
from rfprm_tts.demo import model_path
from rfprm_tts.demo.arithmetic import Difficulty, distinct_problems, grade, held_out_problems
from rfprm_tts.demo.quality import sample_texts
from rfprm_tts.text import split_steps


def training_problems(count: int, seed: int):
    return distinct_problems(random.Random(seed), count, Difficulty(), {p.question for p in held_out_problems()})


def held_out_accuracy(model, tokenizer) -> tuple[float, float, float]:
    model.eval()  # a trainer leaves it in training mode
    problems = held_out_problems()
    texts = sample_texts(model, tokenizer, [p.question for p in problems], n=1, temperature=0.0, max_new_tokens=128)
    correct = [grade(p, split_steps(t[0])).answer_correct for p, t in zip(problems, texts)]
    low, high = bootstrap_ci(correct)
    return sum(correct) / len(correct), low, high


def fresh_generator():
    tokenizer = AutoTokenizer.from_pretrained(model_path("generator"))
    return AutoModelForCausalLM.from_pretrained(model_path("generator"), dtype=torch.float32), tokenizer


def sft(rows: list[dict], seed: int, epochs: int, lr: float, out: Path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = fresh_generator()
    args = SFTConfig(
        output_dir=str(out),
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=16,
        seed=seed,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=50,
        completion_only_loss=True,
    )
    data = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["question"]}],
                "completion": [{"role": "assistant", "content": r["response"]}],
            }
            for r in rows
        ]
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    return trainer.model, tokenizer


def selection(args) -> dict:
    from rfprm_tts.offline.responses import score_responses
    from rfprm_tts.prm import build_scorer
    from rfprm_tts.settings import Settings

    started = time.perf_counter()
    problems = training_problems(args.problems, seed=7)
    model, tokenizer = fresh_generator()
    torch.manual_seed(0)
    texts = sample_texts(
        model, tokenizer, [p.question for p in problems], n=args.samples, temperature=1.0, max_new_tokens=128
    )
    rows = [
        {"question": p.question, "response": t, "correct": grade(p, split_steps(t)).answer_correct, "problem": i}
        for i, (p, ts) in enumerate(zip(problems, texts))
        for t in ts
    ]
    settings = Settings()
    scored = score_responses(
        build_scorer(settings.prm),
        [(r["question"], r["response"]) for r in rows],
        settings.step_separator,
        settings.prm.alpha,
    )
    for r, s in zip(rows, scored):
        r["score"] = s.scores.get("reasonflux", float("-inf")) if s.error is None else float("-inf")
    by_problem: dict[int, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem"], []).append(r)
    print(
        f"sampled and scored {len(rows)} answers to {len(problems)} problems in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    report = {"before": held_out_accuracy(model, tokenizer), "runs": []}
    for seed in args.seeds:
        rng = random.Random(seed)
        sets = {
            "prm_top1": [max(group, key=lambda r: r["score"]) for group in by_problem.values()],
            "random1": [rng.choice(group) for group in by_problem.values()],
            "all": rows,
        }
        for name, chosen in sets.items():
            t0 = time.perf_counter()
            tuned, tok = sft(chosen, seed, args.epochs, args.lr, Path(args.out) / "tmp")
            acc = held_out_accuracy(tuned, tok)
            run = {
                "set": name,
                "seed": seed,
                "examples": len(chosen),
                "examples_correct": sum(r["correct"] for r in chosen) / len(chosen),
                "accuracy": acc,
                "seconds": time.perf_counter() - t0,
            }
            print(json.dumps(run), flush=True)
            report["runs"].append(run)
    return report


REWARDS = (("outcome_only", 0.0), ("prm_mixed", 0.75))  # (name, beta)


def train_grpo(args, beta: float, seed: int):
    """TRL GRPO from the demo generator on the training problems, rewarded with
    beta x PRM + (1 - beta) x outcome; the trained trainer."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rfprm_tts.rewards import RewardModel
    from rfprm_tts.rewards.trl import PRMReward

    data = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": p.question}], "answer": str(p.answer)}
            for p in training_problems(args.problems, seed=11)
        ]
    )
    config = GRPOConfig(
        output_dir=str(Path(args.out) / "tmp"),
        per_device_train_batch_size=args.generations,
        num_generations=args.generations,
        max_completion_length=128,
        max_steps=args.steps,
        learning_rate=args.lr,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10,
        seed=seed,
    )
    trainer = GRPOTrainer(
        model=model_path("generator"), reward_funcs=[PRMReward(RewardModel(beta=beta))], args=config, train_dataset=data
    )
    trainer.train()
    return trainer


def grpo(args) -> dict:
    model, tokenizer = fresh_generator()
    report = {"before": held_out_accuracy(model, tokenizer), "runs": []}
    for seed in args.seeds:
        for name, beta in REWARDS:
            t0 = time.perf_counter()
            trainer = train_grpo(args, beta, seed)
            acc = held_out_accuracy(trainer.model, tokenizer)
            rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
            run = {
                "reward": name,
                "beta": beta,
                "seed": seed,
                "steps": args.steps,
                "accuracy": acc,
                "train_reward_first_last": [rewards[0], rewards[-1]] if rewards else None,
                "seconds": time.perf_counter() - t0,
            }
            print(json.dumps(run), flush=True)
            report["runs"].append(run)
    return report


def grpo_weights(args) -> dict:
    """Do the two rewards train different models? One seed each, then: how far each model's
    weights moved, how far apart they are, and on how many held-out problems their greedy
    answers differ."""
    start, tokenizer = fresh_generator()
    trained = {name: train_grpo(args, beta, args.seeds[0]).model.eval() for name, beta in REWARDS}

    def distance(a, b) -> float:
        pb = dict(b.named_parameters())
        return max((p - pb[n]).abs().max().item() for n, p in a.named_parameters())

    questions = [p.question for p in held_out_problems()]
    answers = {name: [t[0] for t in sample_texts(m, tokenizer, questions, 1, 0.0, 128)] for name, m in trained.items()}
    return {
        "steps": args.steps,
        "seed": args.seeds[0],
        "max_weight_change": {name: distance(m, start) for name, m in trained.items()},
        "max_weight_difference_between_them": distance(trained["outcome_only"], trained["prm_mixed"]),
        "held_out_answers_that_differ": sum(a != b for a, b in zip(answers["outcome_only"], answers["prm_mixed"])),
        "held_out_problems": len(questions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("use", choices=["selection", "grpo", "grpo-weights"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--problems", type=int, default=None, help="training problems (selection 150, grpo 64)")
    parser.add_argument("--samples", type=int, default=8, help="selection: answers sampled per problem")
    parser.add_argument("--epochs", type=int, default=2, help="selection: SFT epochs")
    parser.add_argument("--steps", type=int, default=60, help="grpo: training steps")
    parser.add_argument("--generations", type=int, default=8, help="grpo: completions per prompt (one prompt a step)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (selection 5e-5, grpo 1e-5)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.problems = args.problems or (150 if args.use == "selection" else 64)
    args.lr = args.lr or (5e-5 if args.use == "selection" else 1e-5)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = {"selection": selection, "grpo": grpo, "grpo-weights": grpo_weights}[args.use](args)
    report["config"] = dict(vars(args).items())
    (Path(args.out) / f"{args.use}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))


if __name__ == "__main__":
    main()
