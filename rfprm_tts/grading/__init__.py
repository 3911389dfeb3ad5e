"""Answer equivalence (equivalence.py) and the math-verify worker program it talks to (worker.py)."""
