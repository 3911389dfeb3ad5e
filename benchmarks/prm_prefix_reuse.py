"""Prefix reuse on the in-process vLLM PRM backend (issue #34, goal 3): a beam search on the demo
world with `prm.backend = "vllm"`, the PRM's prefix reuse on (prm.incremental) and off, each in a
process of its own. Prints one table:

    python benchmarks/prm_prefix_reuse.py --problems 40            # CPU: blocks of 32 tokens
    python benchmarks/prm_prefix_reuse.py --problems 200 --block-size 16 --device cuda

- submitted: tokens of every PRM prompt the search sent (what full re-scoring runs);
- floor: each distinct prompt prefix once (the size of the token trie of all prompts), what
  an ideal cache runs;
- run: what vLLM computed, from its own counters (prompt tokens - prompt tokens read from
  its prefix cache); run / floor is the goal's ratio (<= 1.05). A prompt's tail past its last
  whole cached block is run again, so the ratio falls with the block size;
- the answers, and the largest difference of any step score between the two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def trie_size(prompts: list[list[int]]) -> int:
    """Distinct prefixes of the prompts: each token counted once per distinct path to it."""
    root: dict = {}
    size = 0
    for ids in prompts:
        node = root
        for t in ids:
            if t not in node:
                node[t] = {}
                size += 1
            node = node[t]
    return size


def run(args: argparse.Namespace) -> dict:
    """One beam search sweep in this process (`--child on|off`), as JSON."""
    from rfprm_tts import ReasoningSolver, Settings
    from rfprm_tts.demo.arithmetic import held_out_problems

    settings = Settings.load(
        strategy="beam_search",
        generator=dict(model="demo", backend="transformers", temperature=1.0, seed=0),
        prm=dict(
            model="demo",
            backend="vllm",
            dtype="float32",
            device=args.device,
            incremental=args.child == "on",
            vllm=dict(
                enforce_eager=args.device == "cpu",
                engine_kwargs={"block_size": args.block_size, "disable_log_stats": False},
            ),
        ),
    )
    solver = ReasoningSolver(settings)
    runner = solver.scorer.runner
    prompts: list[list[int]] = []
    original = runner.run

    def recording(fmt, questions, inputs):
        prompts.extend(inputs)
        return original(fmt, questions, inputs)

    runner.run = recording
    started = time.perf_counter()
    results = [solver.solve(p.question, n=args.n) for p in held_out_problems(args.problems)]
    wall = time.perf_counter() - started
    counters = {m.name: getattr(m, "value", 0) for m in runner.llm.get_metrics()}
    solver.close()
    return {
        "answers": [r.answer for r in results],
        "scores": [[c.step_scores for c in r.candidates] for r in results],
        "submitted": sum(map(len, prompts)),
        "floor": trie_size(prompts),
        "run": counters["vllm:prompt_tokens"] - counters["vllm:prompt_tokens_cached"],
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--n", type=int, default=4, help="beam search N (beam width 4)")
    parser.add_argument("--block-size", type=int, default=32, help="vLLM's KV block size (CPU: multiples of 32)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run(args)))  # vLLM writes to stdout too
        return
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    got = {}
    for mode in ("off", "on"):
        done = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", mode], env=env, capture_output=True, text=True
        )
        if done.returncode:
            sys.exit(f"the {mode} run failed:\n{done.stderr[-3000:]}")
        got[mode] = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    on, off = got["on"], got["off"]
    diffs = [
        abs(a - b)
        for s_on, s_off in zip(on["scores"], off["scores"])
        for c_on, c_off in zip(s_on, s_off)
        for a, b in zip(c_on, c_off)
        if a is not None and b is not None
    ]
    print(f"beam search N={args.n} on {args.problems} demo problems, prm.backend vllm, block size {args.block_size}")
    print("| prefix reuse | submitted | floor | run (vLLM counters) | run / floor | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode in ("off", "on"):
        r = got[mode]
        print(
            f"| {mode} | {r['submitted']} | {r['floor']} | {r['run']} | {r['run'] / r['floor']:.3f} | {r['wall_s']:.1f} |"
        )
    print(
        f"same answers: {on['answers'] == off['answers']}; largest step-score difference: {max(diffs, default=0):.2e}"
    )


if __name__ == "__main__":
    main()
