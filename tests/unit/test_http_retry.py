"""The shared HTTP retry policy and replica choice (runtime/http_retry.py), without a server:
the errors are built as the OpenAI SDK raises them and the retrier's sleeps are recorded.
Against a scripted server, through the generator: tests/integration/test_openai_faults.py."""

import asyncio
from types import SimpleNamespace

import httpx
import openai
import pytest

from rfprm_tts.errors import MalformedResponseError
from rfprm_tts.runtime import http_retry
from rfprm_tts.runtime.http_retry import Replicas, describe_failure, is_retryable, retry_after_seconds, retrying

REQUEST = httpx.Request("POST", "http://server/v1/completions")


def status(code: int, **headers: str) -> openai.APIStatusError:
    return openai.APIStatusError(
        f"HTTP {code}", response=httpx.Response(code, headers=headers, request=REQUEST), body=None
    )


def test_transient_failures_are_retryable_and_the_clients_own_are_not():
    transient = [
        status(429),
        status(500),
        status(503),
        openai.APIConnectionError(request=REQUEST),
        openai.APITimeoutError(REQUEST),
        MalformedResponseError("no choices"),
    ]
    assert all(is_retryable(exc) for exc in transient)
    assert not any(is_retryable(exc) for exc in [status(400), status(401), status(404), ValueError("bug")])


def test_retry_after_is_read_in_seconds_or_milliseconds():
    assert retry_after_seconds(status(429, **{"retry-after": "3"})) == 3.0
    assert retry_after_seconds(status(503, **{"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after_seconds(status(429, **{"retry-after": "-4"})) == 0.0
    assert retry_after_seconds(status(429, **{"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    assert retry_after_seconds(status(429)) is None and retry_after_seconds(None) is None
    assert retry_after_seconds(openai.APIConnectionError(request=REQUEST)) is None


def run(retrier, failures: list[BaseException]) -> tuple[str, int]:
    """Call through `retrier` a function that raises `failures` in turn, then returns "ok"."""
    calls = 0
    for attempt in retrier:
        with attempt:
            calls += 1
            if calls <= len(failures):
                raise failures[calls - 1]
            result = "ok"
    return result, calls


def test_the_retrier_waits_what_the_server_asks_within_the_cap_then_gives_up():
    sleeps: list[float] = []
    retrier = retrying(2, backoff_s=0.5, backoff_max_s=4.0, asynchronous=False)
    retrier.sleep = sleeps.append
    asked = [status(429, **{"retry-after": "1.5"}), status(503, **{"retry-after": "60"})]
    assert run(retrier, asked) == ("ok", 3) and sleeps == [1.5, 4.0]

    sleeps.clear()
    dropped = openai.APIConnectionError(request=REQUEST)
    assert run(retrier, [dropped, dropped]) == ("ok", 3)
    assert len(sleeps) == 2 and all(0 <= s <= 4.0 for s in sleeps)  # our own backoff, capped

    sleeps.clear()
    last = status(500)
    with pytest.raises(openai.APIStatusError) as raised:  # max_retries 2: three attempts, then the error itself
        run(retrier, [status(500), status(500), last, status(500)])
    assert raised.value is last and len(sleeps) == 2

    sleeps.clear()
    with pytest.raises(openai.APIStatusError, match="HTTP 400"):
        run(retrier, [status(400)])
    assert sleeps == []  # a client error fails at once


def test_the_async_retrier_follows_the_same_policy():
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> int:
        retrier = retrying(3, backoff_s=0.1, backoff_max_s=2.0)
        retrier.sleep = record
        calls = 0
        async for attempt in retrier:
            with attempt:
                calls += 1
                if calls == 1:
                    raise status(429, **{"retry-after-ms": "700"})
        return calls

    assert asyncio.run(main()) == 2 and sleeps == [0.7]


def test_a_failure_is_one_line_naming_the_setting_to_check_without_the_password():
    url = "http://user:secret@server:8000/v1"
    timeout = describe_failure(openai.APITimeoutError(REQUEST), url, 3)
    assert timeout.startswith("request to http://user:***@server:8000/v1 timed out after 3 attempts")
    assert "raise generator.timeout_s" in timeout and "\n" not in timeout
    refused = describe_failure(openai.APIConnectionError(request=REQUEST), url, 1, section="prm")
    assert "cannot reach http://user:***@server:8000/v1 (after 1 attempt)" in refused
    assert "RFPRM_PRM__BASE_URL" in refused and "secret" not in refused
    assert (
        describe_failure(status(401), "http://server/v1", 1)
        == "http://server/v1 answered HTTP 401 (after 1 attempt): HTTP 401"
    )


def test_a_key_sticks_to_its_server_and_one_that_failed_is_tried_last(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(http_retry, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    replicas = Replicas(["http://a", "http://b", "http://c"], cooldown_s=30.0)
    orders = {key: replicas.order(key) for key in (f"question {i}" for i in range(30))}
    for key, order in orders.items():
        assert order == [(order[0] + k) % 3 for k in range(3)]  # its own server, then the next ones
        assert replicas.order(key) == order and replicas.home(key) == order[0]
    assert {order[0] for order in orders.values()} == {0, 1, 2}  # the keys spread over the servers

    key, order = next(iter(orders.items()))
    replicas.failed(order[0])
    assert replicas.order(key) == [*order[1:], order[0]]
    clock[0] += 29.0
    assert replicas.order(key)[-1] == order[0]
    clock[0] += 2.0  # the cooldown is over
    assert replicas.order(key) == order
