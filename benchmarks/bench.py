"""Compute-vs-accuracy curves: the same as `rfprm bench` (and `rfprm bench report DIR`).

    python benchmarks/bench.py --dataset demo --strategies majority_vote best_of_n beam_search \
        --budgets 1 2 4 8 16 --out runs/demo
    python benchmarks/bench.py report runs/demo
"""

import sys

from rfprm_tts.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
