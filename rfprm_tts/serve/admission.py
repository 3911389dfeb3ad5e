"""Who may use the proxy, and how much of it at once.

Exposure: without keys the proxy refuses to listen beyond loopback (unless told the network is
trusted). Keys: bearer keys compared in constant time, never logged; blank keys are refused at start
(an unset `"$VAR"` must not open the proxy), and keys can come from a file so they do not show
in `ps`. Limits: a request's body is read, within a time limit and a size limit, before it
takes a place (so a client that sends half a body holds nothing); then it waits, for at most
`serve.queue_wait_s`, for a place under its key's limit and the proxy's, else gets a 429 with
Retry-After.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.requests import ClientDisconnect, Request

from rfprm_tts.errors import ConfigError
from rfprm_tts.serve.errors import APIError
from rfprm_tts.settings import Settings

_PRINTABLE_KEY = re.compile(r"[\x21-\x7e]+")  # what an Authorization header can carry, no spaces


class ClientGone(Exception):
    """The client closed its connection before its request was read: nobody to answer."""


def check_keys(keys: list[str]) -> None:
    """Refuse keys no client could send, and blank ones: `--api-key "$UNSET"` gives '', which
    would otherwise leave the proxy open."""
    for number, key in enumerate(keys, 1):
        if not _PRINTABLE_KEY.fullmatch(key):
            raise ConfigError(
                f"API key #{number} is empty or has spaces or characters outside printable ASCII "
                '(an unset variable in --api-key "$VAR"?): give each key as visible ASCII characters'
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(settings: Settings) -> None:
    """Refuse an open proxy: beyond loopback without keys, anyone who reaches the port spends
    the upstream's tokens."""
    serve = settings.serve
    if not serve.api_keys and not serve.allow_no_auth and not is_loopback(serve.host):
        raise ConfigError(
            f"refusing to listen on {serve.host} without API keys: anyone who reaches this port "
            "would spend your upstream's tokens. Give clients a key (--api-key-file PATH, one key a "
            "line, or RFPRM_SERVE__API_KEYS='[\"KEY\"]'; --api-key KEY shows in ps), listen on "
            "127.0.0.1, or pass --allow-no-auth (RFPRM_SERVE__ALLOW_NO_AUTH=true) on a network you trust"
        )


def read_key_file(path: str | Path) -> list[str]:
    """The keys in a file, one a line (blank lines and `#` comments skipped): `rfprm serve
    --api-key-file PATH` keeps them out of `ps` and shell history."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ConfigError(f"the API key file {path} holds no key (one a line)")
    check_keys(keys)
    return keys


class Admission:
    """Authentication and the limits on requests in flight: `serve.max_concurrent_per_key`
    for each key and `max_concurrent` for all, with a bounded wait for a place."""

    def __init__(self, keys: list[str], per_key: int, overall: int, wait_s: float):
        check_keys(keys)
        self.keys = [k.encode() for k in keys]
        self.per_key = per_key
        self.wait_s = wait_s
        self._overall = asyncio.Semaphore(overall)
        self._by_key: dict[int, asyncio.Semaphore] = {}
        self._waiting: dict[int, int] = {}  # a key's requests waiting for a place: at most per_key

    def identify(self, authorization: str | None) -> int:
        """The index of the caller's key (-1 when the server has no keys)."""
        if not self.keys:
            return -1
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
        matches = [hmac.compare_digest(given, key) for key in self.keys]  # every key, always
        if not any(matches):
            raise APIError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                "authentication_error",
                "invalid_api_key",
            )
        return matches.index(True)

    @asynccontextmanager
    async def place(self, key: int) -> AsyncIterator[None]:
        """A place under the key's limit and the proxy's for the duration of the block; a 429
        with Retry-After when none frees up within `wait_s`, or at once when as many of the
        key's requests are already waiting as it may have in flight."""
        mine = self._by_key.setdefault(key, asyncio.Semaphore(self.per_key))
        why = f"more than {self.per_key} requests in flight for this key"
        if mine.locked():
            if self._waiting.get(key, 0) >= self.per_key:
                raise self._busy(why)
            self._waiting[key] = self._waiting.get(key, 0) + 1
            try:
                await self._acquire(mine, why)
            finally:
                self._waiting[key] -= 1
        else:
            await mine.acquire()  # free: taken at once, never counted as waiting
        try:
            await self._acquire(self._overall, "the server is at its limit of requests in flight")
        except BaseException:
            mine.release()
            raise
        try:
            yield
        finally:
            self._overall.release()
            mine.release()

    async def _acquire(self, semaphore: asyncio.Semaphore, why: str) -> None:
        if semaphore.locked() and not self.wait_s:
            raise self._busy(why)
        try:  # in this task, not wait_for's: a place taken is off the waiting count at once
            async with asyncio.timeout(self.wait_s or None):
                await semaphore.acquire()
        except TimeoutError:
            raise self._busy(why) from None

    def _busy(self, why: str) -> APIError:
        retry = max(1, math.ceil(self.wait_s))
        return APIError(
            429,
            f"{why}; retry in {retry} s",
            "rate_limit_error",
            "too_many_requests",
            headers={"Retry-After": str(retry)},
        )


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, within `timeout_s` (408 past it) and `limit` bytes (413, before reading past
    it). A client that disconnects meanwhile raises ClientGone."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and len(declared) <= 15 and int(declared) > limit:
        raise APIError(
            413,
            f"request body of {declared} bytes is over the limit of {limit}",
            "invalid_request_error",
            "body_too_large",
        )

    async def read() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise APIError(
                    413, f"request body is over the limit of {limit} bytes", "invalid_request_error", "body_too_large"
                )
        return bytes(body)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise APIError(
            408, f"the request body did not arrive within {timeout_s:g} s", "invalid_request_error", "body_timeout"
        ) from None
    except ClientDisconnect:
        raise ClientGone() from None
