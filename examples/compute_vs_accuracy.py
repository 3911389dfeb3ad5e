"""A small compute-vs-accuracy curve through the Python API of the benchmark harness.

Runs as is on the demo world (8 held-out problems, N = 1, 2, 4); needs matplotlib for the
plots (`pip install 'rfprm-tts[bench]'`, matplotlib alone). The same run from the shell:
    rfprm bench --dataset demo --limit 8 --strategies majority_vote weighted_best_of_n \\
        --budgets 1 2 4 --out runs/example_curve
For a real curve use --dataset math500 (or a local .jsonl) and real models (see quickstart.py).
Rerunning resumes: finished rows are kept and skipped.
"""

import asyncio
from pathlib import Path

from rfprm_tts import Settings
from rfprm_tts.bench import load_problems, run_bench, write_report

problems = load_problems("demo", limit=8)
asyncio.run(
    run_bench(problems, ["majority_vote", "weighted_best_of_n"], [1, 2, 4], Settings.load(), "runs/example_curve")
)
points = write_report("runs/example_curve")  # summary.md, accuracy_vs_tokens.png, accuracy_vs_n.png
best = max(points, key=lambda p: p.accuracy)
print(
    f"best: {best.strategy} at N={best.n}: accuracy {best.accuracy:.2f} with {best.generated_tokens:.0f} generated tokens per problem"
)
plots = sorted(Path("runs/example_curve").glob("*.png"))
print("plots:", ", ".join(map(str, plots)) if plots else "none (pip install 'rfprm-tts[bench]' for matplotlib)")
