"""The retry policy every HTTP call shares (the OpenAI-compatible generator, the HTTP PRM), and
the choice among several servers of one model.

Transient failures only: timeouts, connection errors, malformed bodies, 429 and 5xx are
retried with exponential backoff and jitter, and a 429/503's Retry-After is honoured (both
capped); other 4xx fail at once. The policy is ours (tenacity), not the SDK's, so it is
explicit and testable.
"""

from __future__ import annotations

import time
import zlib

import openai
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from rfprm_tts.errors import MalformedResponseError
from rfprm_tts.settings import without_passwords


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: worth the same request again after a wait."""
    if isinstance(exc, (openai.APIConnectionError, MalformedResponseError)):
        return True  # APITimeoutError is an APIConnectionError
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The wait a 429/503 asks for in its Retry-After (or retry-after-ms) header, if any."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                return None  # an HTTP date: fall back to our own backoff
    return None


def retrying(max_retries: int, backoff_s: float, backoff_max_s: float, *, asynchronous: bool = True):
    """A tenacity retrier with the shared policy (async by default)."""
    backoff = wait_random_exponential(multiplier=backoff_s, max=backoff_max_s)

    def wait(state: RetryCallState) -> float:
        asked = retry_after_seconds(state.outcome.exception() if state.outcome else None)
        return min(asked, backoff_max_s) if asked is not None else backoff(state)

    policy = AsyncRetrying if asynchronous else Retrying
    return policy(
        retry=retry_if_exception(is_retryable), stop=stop_after_attempt(max_retries + 1), wait=wait, reraise=True
    )


def describe_failure(exc: BaseException, base_url: str, attempts: int, section: str = "generator") -> str:
    """One line saying what failed and what to check; `section` names the settings
    ("generator" or "prm") whose base_url and timeout_s apply. A password in the URL is masked."""
    tries = f"after {attempts} attempt{'s' * (attempts != 1)}"
    if isinstance(exc, openai.APITimeoutError):
        line = f"request to {base_url} timed out {tries}; raise {section}.timeout_s or check the server"
    elif isinstance(exc, openai.APIConnectionError):
        line = (
            f"cannot reach {base_url} ({tries}): {exc.__cause__ or exc}; check "
            f"RFPRM_{section.upper()}__BASE_URL and that the server is running"
        )
    elif isinstance(exc, openai.APIStatusError):
        line = f"{base_url} answered HTTP {exc.status_code} ({tries}): {exc.message}"
    else:
        line = f"{base_url}: {exc} ({tries})"
    return without_passwords(line)


class Replicas:
    """Several servers of the same model. A key (the question) sticks to one server while it
    answers (a stable hash: the same in every process, so the server's prefix cache serves the
    question's later calls); a server that failed is tried last for `cooldown_s`."""

    def __init__(self, urls: list[str], cooldown_s: float):
        self.urls = urls
        self.cooldown_s = cooldown_s
        self._down_until = [0.0] * len(urls)

    def home(self, key: str) -> int:
        return zlib.crc32(key.encode()) % len(self.urls)

    def order(self, key: str) -> list[int]:
        """The servers to try for `key`: its own first, then the next ones; those down last."""
        first = self.home(key)
        ring = [(first + k) % len(self.urls) for k in range(len(self.urls))]
        now = time.monotonic()
        return [r for r in ring if self._down_until[r] <= now] + [r for r in ring if self._down_until[r] > now]

    def failed(self, server: int) -> None:
        self._down_until[server] = time.monotonic() + self.cooldown_s
