"""A strategy from another installed package, found through the entry-point group."""

import sys
import textwrap

from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.strategies import available_strategies, base


def test_entry_point_strategy_is_found_and_used(tmp_path, monkeypatch):
    (tmp_path / "first_sample.py").write_text(
        textwrap.dedent('''
        from rfprm_tts.strategies import SearchOutcome, StrategyParams

        class FirstSample:
            """Takes the first sample as is: a minimal third-party strategy."""
            name = "first_sample"
            Params = StrategyParams

            def __init__(self, params):
                self.params = params

            async def search(self, question, ctx):
                candidates = await ctx.evaluate(await ctx.sample(self.params.n))
                return SearchOutcome(answer=candidates[0].answer, candidates=candidates, best=candidates[0])
    ''')
    )
    dist = tmp_path / "first_sample-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: first-sample\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rfprm_tts.strategies]\nfirst_sample = first_sample:FirstSample\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # later tests see the registry without it

    assert "first_sample" in available_strategies()
    texts = ["x 1\n\n\\boxed{1}", "x 9\n\n\\boxed{9}"]
    solver = ReasoningSolver(Settings.load(n=2), generator=ListGenerator(texts), scorer=DigitScorer())
    result = solver.solve("q", strategy="first_sample")
    assert result.strategy == "first_sample" and result.answer == "1"
    assert solver.solve("q").answer == "9"  # best_of_n, for contrast
    sys.modules.pop("first_sample", None)
