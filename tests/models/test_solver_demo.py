"""The module-level solve() and asolve() on the bundled demo world's real models."""

import asyncio
import json

import rfprm_tts


def test_module_level_solve_on_the_demo_world():
    result = rfprm_tts.solve("Compute 7 + 5 * 3 - 4.", n=3, generator__max_tokens=24, generator__seed=0)
    assert len(result.candidates) == 3
    assert result.usage.generated_tokens == sum(c.generated_tokens for c in result.candidates)
    assert 0 < result.usage.generated_tokens <= 3 * 24
    again = json.loads(result.model_dump_json())
    assert again["usage"]["prm_calls"] == 1
    assert asyncio.run(rfprm_tts.asolve("Compute 1 + 2.", n=2, generator__max_tokens=8)).usage.generator_calls == 1
