"""`rfprm serve` against hostile clients (issue #28): a request's content never yields a 500,
a client cannot hold the proxy's places, one request never changes the proxy for others, and
keys stay secret. Over real HTTP, with raw sockets where a well-behaved client library cannot
send the input."""

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from helpers.proxy import ANSWER, KEYS, QUESTION, metric, running, upstream_settings
from helpers.servers import Reply, ScriptedServer, chat_body
from rfprm_tts import Settings
from rfprm_tts.bench.servers import free_port, server_process
from rfprm_tts.errors import ConfigError
from rfprm_tts.serve import create_app

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
ASK = {"messages": [{"role": "user", "content": QUESTION}]}
RFPRM = str(Path(sys.executable).parent / "rfprm")


def post(url: str, body: dict | bytes, headers: dict | None = None, timeout: float = 30) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{url}/v1/chat/completions",
        content=content,
        timeout=timeout,
        headers={**AUTH, "content-type": "application/json", **(headers or {})},
    )


def error_of(response: httpx.Response, status: int) -> dict:
    """The OpenAI-style error object of a response that must have `status`."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One request written byte for byte (headers the SDK would refuse to send); the status
    and body of the answer."""
    with connect(url) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def post_head(path: str, length: int, *extra: bytes) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: proxy",
        f"Authorization: Bearer {KEYS[0]}".encode(),
        b"Content-Type: application/json",
        f"Content-Length: {length}".encode(),
        b"Connection: close",
        *extra,
    ]
    return b"\r\n".join(lines)


@pytest.fixture(scope="module")
def demo_proxy():
    settings = Settings(
        n=2,
        serve={
            "api_keys": KEYS,
            "max_concurrent_per_key": 2,
            "max_token_budget": 5000,
            "body_timeout_s": 1.0,
            "queue_wait_s": 0.5,
        },
    )
    with running(settings) as url:
        yield url


@pytest.fixture
def upstream():
    server = ScriptedServer()
    server.default = Reply(200, chat_body([ANSWER, ANSWER]))
    yield server
    server.close()


# -- a request's content never yields a 500 ------------------------------------------------


@pytest.mark.parametrize(
    "body, code, param",
    [
        (b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json", None),  # RecursionError in json.loads
        (b'{"messages": ' + b"[" * 40 + b"]" * 40 + b"}", "invalid_json", None),  # parses, but deeper than allowed
        (b'{"messages": [{"role": "user", "content": "q"}], "seed": ' + b"9" * 5000 + b"}", "invalid_json", None),
        (b'{"messages": [{"role": "user", "content": "\\ud800 x"}]}', "invalid_unicode", "messages[0].content"),
        (b'{"messages": [{"role": "user", "content": "q"}], "stop": ["\\udfff"]}', "invalid_unicode", "stop[0]"),
        (json.dumps({**ASK, "seed": 2**64}).encode(), "invalid_field", "seed"),
        (json.dumps({**ASK, "rfprm": {"params": {"n": 3}}}).encode(), "invalid_rfprm_option", "rfprm.params.n"),
        (json.dumps({**ASK, "rfprm": {"params": {"name": "x"}}}).encode(), "invalid_rfprm_option", "rfprm.params.name"),
        (json.dumps({**ASK, "rfprm": {"params": {"token_budget": "lots"}}}).encode(), "invalid_rfprm_option", "rfprm"),
    ],
    ids=[
        "depth-5000",
        "depth-40",
        "int-5000-digits",
        "surrogate-content",
        "surrogate-stop",
        "seed-2**64",
        "params-n",
        "params-name",
        "params-string-budget",
    ],
)
def test_request_content_is_a_400_naming_the_field(demo_proxy, body, code, param):
    error = error_of(post(demo_proxy, body), 400)
    assert error["code"] == code and error["param"] == param


@pytest.mark.parametrize(
    "value", [b"9" * 5000, "²".encode("latin-1"), b"12\xb3"], ids=["5000-digits", "superscript", "mixed"]
)
def test_token_budget_header_bytes_are_a_400(demo_proxy, value):
    body = json.dumps(ASK).encode()
    status, answer = raw_request(
        demo_proxy, post_head("/v1/chat/completions", len(body), b"X-Rfprm-Token-Budget: " + value), body
    )
    assert status == 400 and json.loads(answer)["error"]["code"] == "invalid_token_budget"


def test_unknown_paths_and_methods_answer_error_objects(demo_proxy):
    assert error_of(httpx.get(f"{demo_proxy}/v1/nothing"), 404)["code"] == "not_found"
    error_of(httpx.get(f"{demo_proxy}/v1/chat/completions"), 405)


def test_prompt_over_the_prm_context_is_a_400_before_any_work(upstream):
    """The PRM's context is the cap on one PRM input: a question that fills it is refused
    before the search, so no upstream tokens are spent on it and it never joins (and holds
    up) a PRM batch shared with other requests; the error names the numbers."""
    settings = upstream_settings(upstream).with_overrides(prm__max_length=200)
    with running(settings) as url:
        response = post(url, {"messages": [{"role": "user", "content": QUESTION + " Think. " * 100}]})
        batches = metric(url, "rfprm_prm_batch_requests_count")
        assert post(url, ASK).status_code == 200  # an ordinary question still fits
    error = error_of(response, 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert re.search(r"the question takes [0-9,]+ of the PRM's 200 tokens", error["message"]), error["message"]
    assert len(upstream.requests) == 1 and batches == 0  # the upstream saw only the ordinary request


def test_client_that_leaves_during_the_body_is_no_500(demo_proxy):
    before = metric(demo_proxy, 'rfprm_requests_total{status="500"}')
    with connect(demo_proxy) as sock:
        sock.sendall(post_head("/v1/chat/completions", 1000) + b"\r\n\r\n" + b'{"messages": [')
        time.sleep(0.2)
    deadline = time.time() + 5
    while metric(demo_proxy, 'rfprm_requests_total{status="499"}') < 1 and time.time() < deadline:
        time.sleep(0.1)
    assert metric(demo_proxy, 'rfprm_requests_total{status="499"}') >= 1
    assert metric(demo_proxy, 'rfprm_requests_total{status="500"}') == before


def events_of(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, {"error": {"message": "upstream down"}}),
        # the SDK does not validate usage: a string count used to raise a TypeError mid-stream
        Reply(200, {**chat_body([ANSWER, ANSWER]), "usage": {"prompt_tokens": "many", "completion_tokens": "x"}}),
    ],
    ids=["upstream-500", "malformed-usage"],
)
def test_streams_end_with_an_error_event_and_done(upstream, reply):
    upstream.default = reply
    with running(upstream_settings(upstream)) as url:
        response = post(url, {**ASK, "stream": True})
    events = events_of(response)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_failed" and "127.0.0.1" not in error["message"]


def test_a_stream_whose_client_leaves_frees_its_place(upstream):
    upstream.default = Reply(200, chat_body([ANSWER, ANSWER]), delay_s=2.0)
    settings = upstream_settings(upstream, api_keys=KEYS, max_concurrent_per_key=1, queue_wait_s=0)
    with running(settings.with_overrides(generator__timeout_s=10)) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**ASK, "stream": True}, headers=AUTH) as response:
            assert next(response.iter_lines()).startswith("data: ")  # the role chunk; then the client leaves
        deadline = time.time() + 5
        while metric(url, "rfprm_requests_in_flight") > 0 and time.time() < deadline:
            time.sleep(0.1)
        assert (
            metric(url, "rfprm_cancelled_requests_total") == 1
            and metric(url, 'rfprm_requests_total{status="499"}') == 1
        )
        upstream.default = Reply(200, chat_body([ANSWER, ANSWER]))
        assert post(url, ASK).status_code == 200  # the key's one place is free again


def test_a_bug_mid_stream_still_ends_the_stream(upstream, monkeypatch):
    """An error nobody expected (here: building the answer fails) is logged with its
    traceback; the client gets an error event and [DONE], not a cut stream."""
    from rfprm_tts.serve import service

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "completion_body", broken)
    with running(upstream_settings(upstream)) as url:
        events = events_of(post(url, {**ASK, "stream": True}))
        plain = post(url, ASK)
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "internal_error"
    assert error_of(plain, 500)["code"] == "internal_error" and "a bug" not in plain.text


# -- nothing for the operator in a client's error ------------------------------------------


def test_upstream_failures_tell_the_client_only_what_it_can_act_on(upstream):
    upstream.default = Reply(200, {**chat_body([ANSWER]), "choices": None})
    with running(upstream_settings(upstream)) as url:
        error = error_of(post(url, ASK), 502)
        upstream.default = Reply(200, chat_body([ANSWER, ANSWER]), delay_s=1.0)
        timeout = error_of(post(url, ASK), 504)
    for message in (error["message"], timeout["message"]):
        assert "127.0.0.1" not in message and "ChatCompletion" not in message and "timeout_s" not in message
        assert "retry" in message


# -- one request never changes the proxy for everyone ---------------------------------------


def test_one_clients_400_does_not_switch_the_upstream_to_single_requests(upstream):
    """A 400 for a request's content (here: the first request's, to n=2 and to its single
    retries alike) says nothing about whether the upstream takes n."""
    upstream.script = [Reply(400, {"error": {"message": "prompt too long"}})] * 3
    with running(upstream_settings(upstream)) as url:
        assert post(url, ASK).status_code == 502
        upstream.requests.clear()
        for _ in range(3):
            assert post(url, ASK).status_code == 200
    assert [r["n"] for r in upstream.requests] == [2, 2, 2]  # one call each, n honoured


# -- admission that cannot be held ---------------------------------------------------------


def test_half_sent_bodies_hold_no_place(demo_proxy):
    """More connections than the key's places send headers and part of a body; the key's
    ordinary requests are still served, and the half bodies time out with a 408.

    The fixture's queue wait (0.5 s) is shorter than its body timeout (1.0 s): were the half
    bodies holding the key's two places, the ordinary request would get a 429, not a 200.
    (No wall-clock bound: a solve's own time varies with the machine.)"""
    assert post(demo_proxy, ASK).status_code == 200  # warm
    holders = [connect(demo_proxy) for _ in range(4)]
    for sock in holders:
        sock.sendall(post_head("/v1/chat/completions", 1000) + b"\r\n\r\n" + b'{"messages": [')
    assert post(demo_proxy, ASK).status_code == 200
    for sock in holders:
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408") and b'"body_timeout"' in answer
        sock.close()


def test_a_full_key_queues_briefly_then_429s(upstream):
    upstream.default = Reply(200, chat_body([ANSWER, ANSWER]), delay_s=0.5)
    settings = upstream_settings(upstream, api_keys=KEYS, max_concurrent_per_key=1, queue_wait_s=1.5)
    settings = settings.with_overrides(generator__timeout_s=10)
    with running(settings) as url:
        assert (
            post(url, ASK).status_code == 200
        )  # warm: the first solve loads the PRM, which can outlast the queue wait
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(post(url, ASK).status_code)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200, 200]  # the second waited for the first's place
        upstream.default = Reply(200, chat_body([ANSWER, ANSWER]), delay_s=3.0)
        first = threading.Thread(target=lambda: post(url, ASK))
        first.start()
        time.sleep(0.3)
        started = time.perf_counter()
        busy = post(url, ASK)
        waited = time.perf_counter() - started
        first.join()
    assert error_of(busy, 429)["code"] == "too_many_requests" and busy.headers["retry-after"] == "2"
    assert 1.4 < waited < 2.5


def test_the_proxy_wide_limit_holds_across_keys(upstream):
    upstream.default = Reply(200, chat_body([ANSWER, ANSWER]), delay_s=1.5)
    settings = upstream_settings(upstream, api_keys=KEYS, max_concurrent=1, queue_wait_s=0.2)
    with running(settings.with_overrides(generator__timeout_s=10)) as url:
        first = threading.Thread(target=lambda: post(url, ASK))
        first.start()
        time.sleep(0.3)
        other_key = post(url, ASK, headers={"Authorization": f"Bearer {KEYS[1]}"})
        first.join()
    error = error_of(other_key, 429)
    assert "server" in error["message"] and other_key.headers["retry-after"] == "1"


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "   ", "two words", "naïve"])
def test_keys_no_client_can_send_are_refused_at_start(key):
    with pytest.raises(ConfigError, match="API key #2"):
        create_app(Settings(serve={"api_keys": ["good-key", key]}))


def test_keys_from_a_file(tmp_path):
    """`rfprm serve --api-key-file PATH`: keys out of `ps` and shell history."""
    from rfprm_tts.serve.admission import read_key_file

    keys = tmp_path / "keys"
    keys.write_text("# the clients' keys\nkey-one\n\n  key-two  \n")
    assert read_key_file(keys) == ["key-one", "key-two"]
    (tmp_path / "blank").write_text("# none yet\n\n")
    with pytest.raises(ConfigError, match="holds no key"):
        read_key_file(tmp_path / "blank")
    with pytest.raises(ConfigError, match="cannot read"):
        read_key_file(tmp_path / "missing")


def test_metrics_need_a_key_unless_public(upstream):
    with running(upstream_settings(upstream, api_keys=KEYS)) as url:
        assert error_of(httpx.get(f"{url}/metrics"), 401)["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/metrics", headers=AUTH).status_code == 200
    with running(upstream_settings(upstream, api_keys=KEYS, metrics_public=True)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200


def test_blank_key_on_the_command_line_refuses_to_start(tmp_path):
    """`rfprm serve --api-key "$UNSET"` must not open the proxy, on 0.0.0.0 or anywhere."""
    for host in ("0.0.0.0", "127.0.0.1"):
        refused = subprocess.run(
            [RFPRM, "serve", "--host", host, "--port", "0", "--api-key", ""],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert refused.returncode == 2 and "API key #1" in refused.stderr


def test_singular_api_key_setting_is_an_error_not_ignored(tmp_path):
    refused = subprocess.run(
        [RFPRM, "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "RFPRM_SERVE__API_KEY": "k"},
    )
    assert refused.returncode == 2 and "serve.api_key" in refused.stderr and "Uvicorn running" not in refused.stderr


def test_keys_from_the_environment_stay_out_of_every_log_line(tmp_path):
    """Keys given in the environment (not in `ps`), the access log on, a client that puts a
    key in the query string: no key in the log."""
    secret, port = "s3cret-key-value", free_port()
    env = {"RFPRM_SERVE__API_KEYS": json.dumps([secret]), "RFPRM_SERVE__ACCESS_LOG": "true"}
    log = tmp_path / "serve.log"
    with server_process(
        [RFPRM, "serve", "--port", str(port)],
        f"http://127.0.0.1:{port}/health",
        log,
        timeout_s=120,
        cwd=tmp_path,
        env=env,
    ):
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v1/models?api_key={secret}&x=1").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    text = log.read_text()
    assert "GET /v1/models?api_key=" in text and secret not in text


# -- nothing CPU-heavy on the event loop ---------------------------------------------------


def test_a_vote_math_verify_cannot_decide_neither_stalls_the_server_nor_runs_unbounded(upstream):
    """Eight answers only math-verify can compare (28 comparisons of up to 5 s each): the
    vote runs off the event loop, so /health stays fast meanwhile, and within its time budget."""
    towers = [f"The answer is \\boxed{{9^{{9^{{9^{{{k}}}}}}}}}." for k in range(1, 9)]
    upstream.default = Reply(200, chat_body(towers))
    with running(upstream_settings(upstream)) as url:
        outcome: list[tuple[int, float]] = []

        def hostile() -> None:
            started = time.perf_counter()
            response = post(url, {**ASK, "rfprm": {"strategy": "majority_vote", "n": 8}}, timeout=300)
            outcome.append((response.status_code, time.perf_counter() - started))

        thread = threading.Thread(target=hostile)
        thread.start()
        health = []
        while thread.is_alive():
            started = time.perf_counter()
            assert httpx.get(f"{url}/health", timeout=30).status_code == 200
            health.append(time.perf_counter() - started)
            time.sleep(0.05)
        thread.join()
    status, seconds = outcome[0]
    assert status == 200 and seconds < 30  # the vote's 10 s budget, worker starts, the request itself
    assert len(health) > 20 and max(health) < 0.5, sorted(health)[-5:]


# -- in-process generation stops when its client goes away ---------------------------------


def test_cancelled_in_process_generation_frees_the_model_at_once(tiny_generator_dir):
    """The proxy cancels a request's solve when its client leaves; the in-process generator's
    thread must then stop generating, not hold the model (and every later request) until its
    samples are done."""
    import asyncio

    from rfprm_tts.generators import GenerationRequest
    from rfprm_tts.generators.transformers import TransformersGenerator
    from rfprm_tts.settings import GeneratorSettings

    gen = TransformersGenerator(
        GeneratorSettings(model=str(tiny_generator_dir), device="cpu", max_tokens=4096, temperature=1.0, seed=3)
    )
    request = GenerationRequest(QUESTION, n=32)

    async def full_then_cancelled() -> tuple[float, float]:
        started = time.perf_counter()
        await gen.generate(request)
        full = time.perf_counter() - started
        task = asyncio.ensure_future(gen.generate(request))
        await asyncio.sleep(full / 10)
        task.cancel()
        cancelled_at = time.perf_counter()
        await asyncio.to_thread(gen._lock.acquire)  # the model is free again
        gen._lock.release()
        return full, time.perf_counter() - cancelled_at

    full, freed_after = asyncio.run(full_then_cancelled())
    assert full > 1.0 and freed_after < full / 4, (full, freed_after)


def test_a_huge_prompt_gets_a_prm_batch_of_its_own():
    """Its neighbours' inputs are not padded to its length, nor their batch held up by it."""
    from rfprm_tts.prm import ScorerDefaults
    from rfprm_tts.prm.protocol import ScoredBatch
    from rfprm_tts.serve.batching import BatchingScorer

    batches: list[list[int]] = []

    class Recording(ScorerDefaults):
        def score_many(self, requests):
            batches.append(sorted(len(question) for question, _ in requests))
            return [ScoredBatch(step_scores=[[0.5] for _ in trajectories]) for _, trajectories in requests]

    batching = BatchingScorer(Recording(), window_s=0.3, max_batch=64)
    questions = ["q" * 10, "q" * 900_000, "q" * 20, "q" * 30]
    threads = [threading.Thread(target=batching.score_batch, args=(q, [["step"]] * 4)) for q in questions]
    for t in threads:
        t.start()
        time.sleep(0.02)  # in this order
    for t in threads:
        t.join()
    batching.close()
    assert [10] in batches and [900_000] in batches and [20, 30] in batches


def test_eight_huge_prompts_are_refused_at_once_and_hold_up_no_one(upstream):
    """Eight 900 KB questions at once (far past the PRM's context) on one key, and an ordinary
    request on another: the eight are 400s within seconds (only prefixes of them are
    tokenized), and the ordinary request is answered meanwhile (it took 35 s before)."""
    huge = {"messages": [{"role": "user", "content": "Compute 1 + 1. " * 60_000}]}
    with running(upstream_settings(upstream, api_keys=KEYS)) as url:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            refused = [pool.submit(post, url, huge, {"Authorization": f"Bearer {KEYS[0]}"}, 60) for _ in range(8)]
            time.sleep(0.2)
            canary_started = time.perf_counter()
            canary = post(url, ASK, {"Authorization": f"Bearer {KEYS[1]}"})
            canary_s = time.perf_counter() - canary_started
            answers = [f.result() for f in refused]
        all_s = time.perf_counter() - started
    assert canary.status_code == 200 and canary_s < 5, (canary.status_code, canary_s)
    assert all(error_of(a, 400)["code"] == "context_length_exceeded" for a in answers)
    assert all_s < 15, all_s
    assert len(upstream.requests) == 1  # only the ordinary request reached the upstream
