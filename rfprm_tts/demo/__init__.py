"""The bundled demo world: a tiny reasoning model and a tiny ReasonFlux-style PRM, trained
here by `python -m rfprm_tts.demo.train` and shipped inside the package (weights/), so the
default solve runs on a CPU with no download. `demo` is its name wherever a model is named.

The task is multi-step integer arithmetic (rfprm_tts.demo.arithmetic); weights/report.json
holds the quality figures measured when the weights were made.
"""

from rfprm_tts.demo.paths import WEIGHTS_DIR, model_path

__all__ = ["WEIGHTS_DIR", "model_path"]
