"""Answer equivalence from a plain user script in its own process (math-verify's worker must not re-import it)."""

PLAIN_SCRIPT = """
import threading
from rfprm_tts.grading.equivalence import equivalent, unchecked_comparisons, vote
print("sqrt", equivalent("\\\\sqrt{200}", "10\\\\sqrt{2}"))
print("sum", equivalent("x+1", "1+x"))
print("differ", equivalent("x+1", "x+2"))
out = []
worker = threading.Thread(target=lambda: out.append(equivalent("\\\\frac{\\\\pi}{2}", "\\\\pi/2")))
worker.start(); worker.join()
print("thread", out[0])
print("vote", vote(["2x", "x*2", "3"]).answer, unchecked_comparisons())
"""


def test_verdicts_are_the_same_in_a_plain_script(tmp_path):
    """A script without a `__main__` guard, run as a user runs it: math-verify must not
    re-import it (multiprocessing's spawn did, and every such comparison came out False)."""
    import subprocess
    import sys

    script = tmp_path / "check_answers.py"
    script.write_text(PLAIN_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines == {"sqrt": "True", "sum": "True", "differ": "False", "thread": "True", "vote": "2x 0"}
    assert done.stdout.count("\n") == 5  # the script ran once: nothing re-imported it
