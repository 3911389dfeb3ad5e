"""The proxy as tests run it: in a thread of the test process, on a free port, with known keys."""

from __future__ import annotations

import httpx

from helpers.servers import ScriptedServer
from rfprm_tts import Settings
from rfprm_tts.serve import serving

QUESTION = "Compute 7 + 5 * 3 - 4."
KEYS = ["key-one", "key-two"]


def running(settings: Settings):
    """The proxy on a free loopback port, in a thread of this process."""
    return serving(settings.with_overrides(serve__port=0))


def metric(url: str, name: str) -> float:
    """A value of the proxy's /metrics (which asks for a key when the proxy has keys)."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEYS[0]}"}).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def upstream_settings(upstream: ScriptedServer, **serve) -> Settings:
    return Settings(
        n=2,
        generator={
            "backend": "openai",
            "base_url": upstream.base_url,
            "model": "up",
            "timeout_s": 0.5,
            "max_retries": 2,
            "backoff_s": 0.01,
            "backoff_max_s": 0.05,
        },
        serve=serve,
    )


ANSWER = "5 * 3 = 15\n\n7 + 15 = 22\n\n22 - 4 = 18\n\nThe answer is \\boxed{18}."
