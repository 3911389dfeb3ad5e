"""What PRM scoring costs, and what batching and incremental scoring save. Prints one table.

    python benchmarks/prm_throughput.py                             # CPU, the demo PRM's shape
    python benchmarks/prm_throughput.py --shape 7b --device cuda    # Qwen2.5-Math-7B shape, bf16

The model is a Qwen2ForProcessRewardModel with random weights made on the device (no
download); inputs are random token ids with a step tag closing every step, so only shapes
matter. Three cases:

- best_of_n: whole trajectories (64 of 1-4k tokens on a GPU). Paths: the upstream recipe
  (one sequence at a time), a padded batch in arrival order, and ours (sorted length
  buckets with a token budget, or packing: with sdpa's dense mask, and with flex_attention's
  block-sparse one, prm.attention). Every path is warmed up once, then timed
  `--repeats` times: the median tokens/s and the run-to-run spread (min-max). "% roofline"
  is 2 x non-embedding parameters x tokens/s over the FLOP/s of a large matmul measured
  here (not the card's spec sheet), so attention FLOPs are not counted in it.
- beam_partials: many short partial trajectories (256 of 64-512 tokens), where batching decides.
- beam_search: N beams, M children each, K rounds of one step: the tokens the PRM runs with
  full re-scoring vs incremental scoring, against the floor of each token once (the
  question's template once + every generated step token).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
from transformers import Qwen2Config

from rfprm_tts.chat import prompt_ids, to_messages
from rfprm_tts.demo.tiny import build_tokenizer
from rfprm_tts.prm.formats.step_tag import StepTagFormat, answer_start
from rfprm_tts.prm.models.qwen2_prm import Qwen2ForProcessRewardModel
from rfprm_tts.prm.protocol import positions
from rfprm_tts.prm.runners.batched import TransformersRunner
from rfprm_tts.prm.runners.incremental import IncrementalRunner
from rfprm_tts.prm.scorer import PRMScorer

SHAPES = {  # Qwen2 dimensions
    "demo": dict(
        hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4
    ),
    "7b": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4
    ),
}
WORKLOADS = {  # (count, min tokens, max tokens)
    "cpu": {"best_of_n": (64, 256, 1024), "beam_partials": (256, 64, 512), "beam_search": (8, 4, 12, 24)},
    "cuda": {"best_of_n": (64, 1024, 4096), "beam_partials": (256, 64, 512), "beam_search": (16, 4, 16, 48)},
}
QUESTION = "Compute 7 + 5 * 3 - 4."


def build_model(shape: str, device: torch.device, dtype: torch.dtype, vocab_size: int) -> Qwen2ForProcessRewardModel:
    config = Qwen2Config(vocab_size=vocab_size, max_position_embeddings=8192, num_labels=2, **SHAPES[shape])
    config._attn_implementation = "sdpa"
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = Qwen2ForProcessRewardModel(config)
    torch.set_default_dtype(torch.float32)
    return model.eval()


def synthetic(rng: random.Random, head: list[int], tag: int, vocab: int, length: int, step_len: int = 40) -> list[int]:
    """The question's template, then random tokens with a tag closing every ~step_len."""
    ids = list(head)
    while len(ids) < length:
        ids += [rng.randrange(3, vocab) for _ in range(rng.randint(step_len // 2, step_len * 3 // 2))] + [tag]
    return ids


def timed(run: Callable[[], int], device: torch.device) -> tuple[float, int]:
    """Seconds for one call, and the padding it reported."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    padded = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, padded


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul, the roofline the PRM's tokens/s is measured against."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)

    def ten_products() -> int:
        for _ in range(10):
            a @ b
        return 0

    ten_products()  # warm-up
    seconds, _ = timed(ten_products, device)
    return 10 * 2 * n**3 / seconds


@contextlib.contextmanager
def attention_as(runner: TransformersRunner, attention: str) -> Iterator[None]:
    """The runner's model with another attention implementation (prm.attention) for a while:
    "flex_attention" masks packed inputs block-sparsely, sdpa with a dense mask."""
    model = runner._loaded_model()
    before = model.config._attn_implementation
    model.set_attn_implementation(attention)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def throughput_rows(
    case: str,
    inputs: list[list[int]],
    fmt: StepTagFormat,
    runner: TransformersRunner,
    params: int,
    peak: float,
    device,
    repeats: int,
) -> list[list[str]]:
    real = sum(len(ids) for ids in inputs)

    start = fmt.answer_start(QUESTION)
    jobs = [(ids, positions(fmt, ids, start)) for ids in inputs]

    def upstream() -> int:
        for job in jobs:
            runner._forward_padded([job])
        return 0

    def padded_batch() -> int:
        """Arrival order, 8 at a time, each chunk padded to its longest input."""
        pad = 0
        for i in range(0, len(jobs), 8):
            chunk = jobs[i : i + 8]
            runner._forward_padded(chunk)
            pad += len(chunk) * max(len(ids) for ids, _ in chunk) - sum(len(ids) for ids, _ in chunk)
        return pad

    def ours(batching: str, attention: str = "sdpa") -> Callable[[], int]:
        def run() -> int:
            runner.batching = batching
            with attention_as(runner, attention):
                return runner.run(fmt, [QUESTION] * len(inputs), inputs).padded_tokens

        return run

    rows = []
    paths = [
        ("upstream (1 at a time)", upstream),
        ("padded batch of 8", padded_batch),
        ("ours: bucket", ours("bucket")),
        ("ours: pack", ours("pack")),
        ("ours: pack, flex_attention", ours("pack", "flex_attention")),
    ]
    for name, run in paths:
        try:
            run()  # warm-up, for every path alike: kernels chosen, memory pooled
            times = []
            for _ in range(repeats):
                seconds, pad = timed(run, device)
                times.append(seconds)
        except torch.OutOfMemoryError:
            rows.append([case, name, "OOM", "", "", "", ""])
            torch.cuda.empty_cache()
            continue
        seconds = statistics.median(times)
        tps = real / seconds
        spread = f"{real / max(times):,.0f}-{real / min(times):,.0f}"
        rows.append(
            [
                case,
                name,
                f"{tps:,.0f}",
                spread,
                f"{pad / (real + pad):.1%}",
                f"{2 * params * tps / peak:.1%}",
                f"{seconds:.2f}",
            ]
        )
    return rows


def beam_search_tokens(
    fmt: StepTagFormat,
    full_runner: TransformersRunner,
    incremental: IncrementalRunner,
    beams: int,
    width: int,
    rounds: int,
    step_len: int,
    device,
) -> list[list[str]]:
    """N beams, M children each, K rounds of one step; keep N children at random. Each round's
    children are scored in one call, fully or incrementally."""
    rng = random.Random(0)
    head = prompt_ids(fmt.tokenizer, to_messages(QUESTION))
    vocab = len(fmt.tokenizer)

    def step() -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(step_len)] + [fmt.tag_id]

    frontier, generated, calls = [list(head)], 0, []
    for _ in range(rounds):
        children = [beam + step() for beam in frontier for _ in range(width if len(frontier) > 1 else beams * width)]
        generated += len(children) * (step_len + 1)
        calls.append(children)
        frontier = rng.sample(children, beams)
    full = sum(len(ids) for batch in calls for ids in batch)
    ran = {}

    def run(how: TransformersRunner) -> Callable[[], int]:
        def rounds_of_search() -> int:
            ran[how] = sum(sum(how.run(fmt, [QUESTION] * len(batch), batch).tokens) for batch in calls)
            return 0

        return rounds_of_search

    full_runner.batching = "bucket"
    full_seconds, _ = timed(run(full_runner), device)
    seconds, _ = timed(run(incremental), device)
    assert ran[full_runner] == full
    incremental = ran[incremental]
    floor = len(head) + generated
    name = f"(N={beams}, M={width}, K={rounds}, {step_len + 1}-token steps)"
    return [
        [
            "beam_search",
            f"full re-scoring {name}",
            f"{full:,} tokens",
            "",
            f"{full / floor:.2f}x floor",
            "",
            f"{full_seconds:.2f}",
        ],
        [
            "beam_search",
            "incremental (KV-cached prefixes)",
            f"{incremental:,} tokens",
            "",
            f"{incremental / floor:.2f}x floor",
            "",
            f"{seconds:.2f}",
        ],
        [  # issue #34's goal 2: the time saving near the token saving (>= 6x where tokens save 10x)
            "beam_search",
            "saving, full / incremental",
            f"{full / incremental:.2f}x tokens",
            "",
            "",
            "",
            f"{full_seconds / seconds:.2f}x time",
        ],
    ]


def agreement(fmt: StepTagFormat, model: torch.nn.Module, options: dict, rng: random.Random) -> str:
    """Max |score difference| of incremental (prefix first, then the whole) and of packed
    scoring against bucketed full scoring, on 16 random trajectories, in the run's dtype; and
    each path against a float32 copy of the model, which tells rounding (every path as far
    from float32 as full scoring is) from a bug (one path much further)."""
    steps = [
        [f"{rng.randint(1, 99)} + {rng.randint(1, 99)} = {rng.randint(1, 199)}" for _ in range(rng.randint(2, 12))]
        for _ in range(16)
    ]
    scorer = lambda runner: PRMScorer(fmt, runner)  # noqa: E731
    full = scorer(TransformersRunner(model, **options, batching="bucket")).score(QUESTION, steps)
    incremental = scorer(IncrementalRunner(model, **options, batching="bucket"))
    incremental.score(QUESTION, [s[: len(s) // 2] for s in steps])
    got = incremental.score(QUESTION, steps)
    pack = TransformersRunner(model, **options, batching="pack")
    packed = scorer(pack).score(QUESTION, steps)
    with attention_as(pack, "flex_attention"):
        flex = scorer(pack).score(QUESTION, steps)
    diff = lambda a, b: max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v))  # noqa: E731
    line = (
        f"max |score difference| vs full bucketed scoring: incremental {diff(got, full):.1e}, "
        f"packed {diff(packed, full):.1e}, packed with flex_attention {diff(flex, full):.1e}"
    )
    if next(model.parameters()).dtype == torch.float32:
        return line
    exact = scorer(TransformersRunner(copy.deepcopy(model).float(), **options)).score(QUESTION, steps)
    return line + (
        f"\nagainst float32 weights: full {diff(full, exact):.1e}, incremental {diff(got, exact):.1e}, "
        f"packed {diff(packed, exact):.1e}, packed with flex_attention {diff(flex, exact):.1e}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="demo")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], help="default: bfloat16 on cuda, else float32")
    parser.add_argument(
        "--agreement-only", action="store_true", help="only compare incremental/packed with full scores"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each path (after one warm-up)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else torch.bfloat16 if device.type == "cuda" else torch.float32
    workload = WORKLOADS[device.type]
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer()
    tag = tokenizer.convert_tokens_to_ids("<extra_0>")
    model = build_model(args.shape, device, dtype, vocab_size=max(len(tokenizer), 152064 if args.shape == "7b" else 0))
    # FLOPs per token: 2 x the parameters that do matmuls (the embedding table is a lookup)
    params = sum(p.numel() for p in model.parameters()) - model.model.embed_tokens.weight.numel()
    options = dict(batch_size=64, max_batch_tokens=args.max_batch_tokens)
    fmt = StepTagFormat(tokenizer)
    runner = TransformersRunner(model, **options)
    peak = matmul_peak(device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# PRM throughput: {args.shape} shape ({params / 1e6:,.1f}M non-embedding parameters, {dtype}), {name}")
    print(
        f"# matmul peak measured here: {peak / 1e12:,.1f} TFLOP/s; max_batch_tokens={args.max_batch_tokens}; "
        f"median of {args.repeats} timed runs after one warm-up per path\n"
    )

    rng = random.Random(args.seed)
    if args.agreement_only:
        print(agreement(fmt, model, options, rng))
        return
    head = list(range(3, 3 + answer_start(tokenizer, QUESTION)))
    rows = []
    for case in ("best_of_n", "beam_partials"):
        count, low, high = workload[case]
        inputs = [synthetic(rng, head, tag, len(tokenizer), rng.randint(low, high)) for _ in range(count)]
        rows += throughput_rows(
            f"{case} ({count} x {low}-{high} tok)", inputs, fmt, runner, params, peak, device, args.repeats
        )
        print(f"  {case} done", file=sys.stderr)
    incremental = IncrementalRunner(model, cache_max_tokens=10**9, **options)
    rows += beam_search_tokens(fmt, runner, incremental, *workload["beam_search"], device=device)
    print(agreement(fmt, model, options, rng) + "\n")

    header = ["case", "path", "tokens/s (median)", "spread (min-max)", "padding", "% roofline", "seconds"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
