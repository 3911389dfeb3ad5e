"""Train the demo world from a seed: a tiny Qwen2 reasoning model and a tiny ReasonFlux-style PRM.

    python -m rfprm_tts.demo.train --out rfprm_tts/demo/weights     # the full run (see README)
    python -m rfprm_tts.demo.train --smoke --out /tmp/world          # a few steps, for CI

`--world think` trains the demo-think world instead (rfprm_tts.demo.train_think).

1. Language model. One Qwen2ForCausalLM run on correct solutions to random problems (never a
   held-out one). An early snapshot is the *generator* (it errs: room for search to help).
2. PRM data. The generator samples answers to fresh problems at the world's temperature;
   each is graded exactly (rfprm_tts.demo.arithmetic.digit_labels: every digit of a step is
   right or wrong, judged from what is written before it). Every answer also gets a twin
   cut after a step whose result has one digit changed (`prm_slips`): the generator's
   commonest mistake, beside its right twin, many times over.
3. PRM. Qwen2ForProcessRewardModel = the final LM's body (or the generator's: `prm_body`),
   one more decoder layer started as the identity (`prm_extra_layers`), and a fresh 2-label
   head. The step tag's embedding starts from "\n"'s (the LM never read the tag). First the
   head and the new layer on the frozen body, then everything at a lower rate. A step's
   score is the min of P(class 1) over its tokens and its tag: the checkpoint says so
   (config `rfprm_readout: "token_min"`), and `load_prm` honours it; an answer's score is
   the product of its steps' (`rfprm_aggregation: "prod"`, what prm.aggregation "auto"
   follows). (The ReasonFlux read-out at the tag alone was tried first and stayed near
   chance within problems; every recipe tried is in the README.)
4. Report. Both models are saved, reloaded through the public loaders, and measured on the
   held-out problems (rfprm_tts.demo.quality).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoModelForCausalLM, Qwen2ForCausalLM

from rfprm_tts.demo.arithmetic import (
    Difficulty,
    Problem,
    digit_slip,
    grade,
    held_out_problems,
)
from rfprm_tts.demo.examples import lm_batch, pad, prm_example, training_problems
from rfprm_tts.demo.quality import evaluate_world, format_report, sample_texts
from rfprm_tts.demo.tiny import build_tokenizer, tiny_config
from rfprm_tts.prm.models.qwen2_prm import Qwen2ForProcessRewardModel
from rfprm_tts.runtime.files import current_umask
from rfprm_tts.runtime.model_names import resolve_model
from rfprm_tts.text import split_steps

SYSTEM_PROMPT = "Solve step by step."


@dataclass
class TrainConfig:
    seed: int = 0
    difficulty: Difficulty = field(default_factory=Difficulty)
    temperature: float = 1.0  # the world's sampling temperature
    # model
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    # language model
    lm_steps: int = 4000
    # The generator is the last snapshot (every `snapshot_every` steps) whose greedy accuracy
    # on `val_problems` fresh problems is at most `generator_max_greedy`: it must err.
    snapshot_every: int = 200
    generator_max_greedy: float = 0.6
    val_problems: int = 96
    lm_batch: int = 32
    lm_lr: float = 2e-3
    warmup: int = 100
    lm_init: str = ""  # a model (name or path) whose weights start the language model; "": from scratch
    # what prm.aggregation "auto" follows for this PRM: weighted voting gained most with it (README)
    prm_aggregation: str = "prod"
    # PRM
    prm_problems: int = 1500
    prm_samples: int = 8
    prm_head_steps: int = 500
    prm_full_steps: int = 5000
    prm_batch: int = 32
    prm_head_lr: float = 1e-3
    prm_full_lr: float = 2e-4
    prm_body: str = "language_model"  # or "generator": the sampled model's own weights
    prm_labels: str = "digits"  # every digit right/wrong (arithmetic.digit_labels), or "first_error"
    # "newline": start the step tag's embedding from "\n"'s (the LM never reads the tag)
    prm_tag_embedding: str = "newline"  # or "own": as the LM left it
    # Fresh decoder layers on top of the body, started as the identity and trained with the
    # head: room to compare a token with what the body expected there.
    prm_extra_layers: int = 1
    # Share of sampled answers that also get a twin with one result digit changed (digit_slip):
    # many more wrong digits, each beside its right twin.
    prm_slips: float = 1.0
    error_weight: float = 10.0  # first-error tokens are rare: weigh them up
    # report
    eval_problems: int = 200
    eval_n: int = 16


SMOKE: dict[str, Any] = dict(
    lm_steps=4,
    snapshot_every=2,
    val_problems=2,
    prm_problems=4,
    prm_samples=2,
    prm_head_steps=2,
    prm_full_steps=2,
    eval_problems=4,
    eval_n=2,
    lm_batch=4,
    prm_batch=4,
)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def greedy_accuracy(model, tokenizer, problems: list[Problem]) -> float:
    texts = sample_texts(model.eval(), tokenizer, [p.question for p in problems], n=1, temperature=0.0)
    model.train()
    return sum(grade(p, split_steps(t[0])).answer_correct for p, t in zip(problems, texts)) / len(problems)


def train_lm(
    cfg: TrainConfig,
    tokenizer,
    problems,
    make_batch: Callable[[Any, list[Problem]], dict[str, torch.Tensor]] = lm_batch,
    accuracy: Callable[[Any, Any, list[Problem]], float] = greedy_accuracy,
    max_new_tokens: int = 160,
) -> tuple[Qwen2ForCausalLM, Qwen2ForCausalLM]:
    """Returns (generator snapshot, final language model). `make_batch` and `accuracy` (greedy,
    on validation problems) are the demo world's unless another world gives its own."""
    config = tiny_config(
        len(tokenizer),
        "Qwen2ForCausalLM",
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    if cfg.lm_init:  # another world's model, fine-tuned here (same tokenizer, same shape)
        model.load_state_dict(
            AutoModelForCausalLM.from_pretrained(resolve_model(cfg.lm_init, "generator")).state_dict()
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lm_lr, weight_decay=0.01, betas=(0.9, 0.98))
    validation = [next(problems) for _ in range(cfg.val_problems)]
    generator: Qwen2ForCausalLM | None = None
    generator_info: dict[str, float] = {}
    needs_final = cfg.prm_body == "language_model"
    progress = tqdm(range(cfg.lm_steps), desc="language model", unit="step")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg.lm_steps, cfg.lm_lr, cfg.warmup)
        batch = make_batch(tokenizer, [next(problems) for _ in range(cfg.lm_batch)])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.3f}", **generator_info)
        if (step + 1) % cfg.snapshot_every == 0:
            greedy = accuracy(model, tokenizer, validation)
            if generator is None or greedy <= cfg.generator_max_greedy:
                generator, generator_info = copy.deepcopy(model), {"gen_step": step + 1, "gen_greedy": greedy}
            progress.write(f"step {step + 1}: loss {loss.item():.3f}, validation greedy {greedy:.3f}")
            sample = sample_texts(model.eval(), tokenizer, [validation[0].question], 1, 0.0, max_new_tokens)
            progress.write(f"  sample: {sample[0][0]!r}")
            model.train()
            if greedy > cfg.generator_max_greedy and not needs_final:
                progress.write("the generator is chosen and the PRM does not start from the final model: stopping")
                break
    print(f"generator: snapshot {generator_info}")
    assert generator is not None, "lm_steps must reach snapshot_every: no generator snapshot was taken"
    return generator.eval(), model.eval()


def train_prm(cfg: TrainConfig, tokenizer, body: Qwen2ForCausalLM, examples) -> Qwen2ForProcessRewardModel:
    config = copy.deepcopy(body.config)
    config.architectures = ["Qwen2ForProcessRewardModel"]
    config.num_labels = 2
    config.rfprm_readout = "token_min"
    config.rfprm_aggregation = cfg.prm_aggregation
    config.num_hidden_layers += cfg.prm_extra_layers
    config.layer_types = ["full_attention"] * config.num_hidden_layers
    prm = Qwen2ForProcessRewardModel(config)
    prm.model.load_state_dict(body.model.state_dict(), strict=cfg.prm_extra_layers == 0)
    extra_layers = prm.model.layers[body.config.num_hidden_layers :]
    with torch.no_grad():
        for layer in extra_layers:  # the identity until trained: residual outputs start at zero
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    if cfg.prm_tag_embedding == "newline":
        embedding = prm.model.embed_tokens.weight
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
        with torch.no_grad():
            embedding[tokenizer.convert_tokens_to_ids("<extra_0>")] = embedding[newline]
    rng = random.Random(cfg.seed + 2)
    phases = [
        ("PRM head", cfg.prm_head_steps, cfg.prm_head_lr, [*prm.score.parameters(), *extra_layers.parameters()]),
        ("PRM full", cfg.prm_full_steps, cfg.prm_full_lr, prm.parameters()),
    ]
    prm.train()
    for name, steps, lr, params in phases:
        params = list(params)
        for p in prm.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        progress = tqdm(range(steps), desc=name, unit="step")
        for step in progress:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, lr, min(cfg.warmup, steps // 10 + 1))
            chosen = rng.sample(examples, min(cfg.prm_batch, len(examples)))
            input_ids = pad([ids for ids, _ in chosen], tokenizer.pad_token_id)
            labels = pad([lab for _, lab in chosen], -100)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = prm(input_ids=input_ids, attention_mask=(input_ids != tokenizer.pad_token_id).long()).logits
            weights = torch.where(labels == 0, cfg.error_weight, 1.0) * (labels != -100)
            losses = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp(min=0), reduction="none")
            loss = (losses * weights).sum() / weights.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            progress.set_postfix(loss=f"{loss.item():.3f}")
    for p in prm.parameters():
        p.requires_grad_(True)
    return prm.eval()


def save(model, tokenizer, path: Path) -> None:
    """The checkpoint, every file with the mode open() gives (transformers writes the weights
    0600, which a wheel built from them would install unreadable to other users)."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    for file in path.iterdir():
        if file.is_file():
            file.chmod(0o666 & ~current_umask())


def training_setup(cfg: TrainConfig) -> tuple[Any, Iterator[Problem], list[Problem]]:
    """Both worlds' start: the seeds, the tokenizer, the language model's endless stream of
    training problems and the PRM's problems, none of them a held-out question. The PRM's
    problems have their own seed, so a PRM-only run (--generator) draws what a full run does."""
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    held_out = {p.question for p in held_out_problems(cfg.eval_problems, difficulty=cfg.difficulty)}
    problems = training_problems(random.Random(cfg.seed), cfg.difficulty, held_out)
    prm_stream = training_problems(random.Random(cfg.seed + 1), cfg.difficulty, held_out)
    return build_tokenizer(SYSTEM_PROMPT), problems, [next(prm_stream) for _ in range(cfg.prm_problems)]


def language_models(cfg: TrainConfig, args, tokenizer, problems, **world) -> tuple[Any, Any]:
    """(generator, final language model): trained (train_lm with a world's `world` functions),
    or loaded from --generator/--language-model; saved to OUT/generator (and OUT/language_model
    with --save-language-model)."""
    if args.generator:
        generator = AutoModelForCausalLM.from_pretrained(args.generator, dtype=torch.float32).eval()
        language_model = generator
        if args.language_model:
            language_model = AutoModelForCausalLM.from_pretrained(args.language_model, dtype=torch.float32).eval()
    else:
        generator, language_model = train_lm(cfg, tokenizer, problems, **world)
    save(generator, tokenizer, args.out / "generator")
    if args.save_language_model:
        save(language_model, tokenizer, args.out / "language_model")
    return generator, language_model


def finish(report: dict, cfg: TrainConfig, args, started: float, text: Callable[[dict], str]) -> None:
    """A world's report with its config and minutes, written (OUT/report.json, or --report) and
    printed as `text` formats it."""
    report["train_config"] = asdict(cfg)
    report["minutes"] = round((time.time() - started) / 60, 1)
    (args.report or args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(text(report))
    print(f"total time: {report['minutes']} min")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where generator/ and prm/ are written")
    parser.add_argument(
        "--world",
        choices=["demo", "think", "draft"],
        default="demo",
        help="demo: the bundled world (rfprm_tts/demo/weights); think: demo-think, which thinks in <think> "
        "first (rfprm_tts/demo/weights_think; rfprm_tts.demo.train_think); draft: demo-draft, a draft "
        "model for the demo generator (rfprm_tts/demo/weights_draft; rfprm_tts.demo.train_draft)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few steps of everything (CI)")
    parser.add_argument("--eval-only", action="store_true", help="only measure the models in --out")
    parser.add_argument(
        "--eval-set",
        choices=["held_out", "fresh"],
        default="held_out",
        help="measure on the held-out set (recipes were chosen on it) or the fresh set "
        "(arithmetic.fresh_problems: never used for any choice; keep it so)",
    )
    parser.add_argument("--report", type=Path, help="where the report goes (default: OUT/report.json)")
    parser.add_argument("--generator", type=Path, help="reuse this trained generator: train only the PRM")
    parser.add_argument(
        "--language-model",
        type=Path,
        help="with --generator: the final language model to start the PRM from (default: the generator)",
    )
    parser.add_argument(
        "--save-language-model",
        action="store_true",
        help="also write the final language model to OUT/language_model (not bundled)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a TrainConfig field, e.g. --set prm_labels=digits",
    )
    args = parser.parse_args(argv)
    if args.language_model and not args.generator:
        parser.error("--language-model needs --generator (a full run trains its own language model)")
    if args.eval_only and not (args.out / "generator" / "config.json").is_file():
        parser.error(
            f"--eval-only measures the models in --out, and {args.out / 'generator'} holds none; give the "
            "folder a run wrote, or drop --eval-only to train"
        )
    from rfprm_tts.demo import train_draft, train_think  # they build on this module

    config_class, smoke = {
        "demo": (TrainConfig, SMOKE),
        "think": (train_think.ThinkConfig, {**SMOKE, **train_think.THINK_SMOKE}),
        "draft": (train_draft.DraftConfig, train_draft.DRAFT_SMOKE),
    }[args.world]
    cfg = config_class(seed=args.seed)
    if args.smoke:
        cfg = replace(cfg, **smoke)
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in config_class.__dataclass_fields__ or name == "difficulty":
            parser.error(f"--set {item}: no such {config_class.__name__} field")
        cfg = replace(cfg, **{name: type(getattr(cfg, name))(value)})
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if isinstance(cfg, train_think.ThinkConfig | train_draft.DraftConfig):
        train_think.run(cfg, args) if isinstance(cfg, train_think.ThinkConfig) else train_draft.run(cfg, args)
        return
    started = time.time()
    if not args.eval_only:
        tokenizer, problems, prm_problems = training_setup(cfg)
        generator, language_model = language_models(cfg, args, tokenizer, problems)
        torch.manual_seed(cfg.seed + 1)
        texts = sample_texts(
            generator, tokenizer, [p.question for p in prm_problems], n=cfg.prm_samples, temperature=cfg.temperature
        )
        answers = [(p, split_steps(t)) for p, ts in zip(prm_problems, texts) for t in ts]
        rng = random.Random(cfg.seed + 4)
        slips = [(p, slip) for p, steps in answers if rng.random() < cfg.prm_slips and (slip := digit_slip(steps, rng))]
        examples = [prm_example(tokenizer, p, steps, cfg.prm_labels) for p, steps in answers + slips]
        examples = [e for e in examples if any(label != -100 for label in e[1])]
        correct = sum(grade(p, steps).answer_correct for p, steps in answers)
        print(
            f"PRM data: {len(answers)} sampled answers, {correct / max(1, len(answers)):.1%} with a right answer, "
            f"{len(slips)} digit-slip twins"
        )

        prm = train_prm(cfg, tokenizer, generator if cfg.prm_body == "generator" else language_model, examples)
        save(prm, tokenizer, args.out / "prm")
    finish(evaluate_world(cfg, args.out, args.eval_set), cfg, args, started, format_report)


if __name__ == "__main__":
    main()
