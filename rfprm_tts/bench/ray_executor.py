"""Bench jobs on Ray actors, each owning one ReasoningSolver (`rfprm bench --executor ray`).

The bench process stays the only writer of rows.jsonl: actors return rows and the driver
appends them, so resuming a run works as in a local one. Plain Ray actors, not Ray Data: a
search loop generates and scores in turn, which a pipeline of batch stages cannot drive.

Faults: when an actor dies (its process or its whole node), the jobs it was running go back
to the queue for the other replicas, and Ray restarts the actor (`max_restarts=-1`) when the
cluster has room; it takes jobs again once its models are loaded. A job whose replica died
under it `max_attempts` times becomes error rows rather than a crash loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from rfprm_tts.bench.jobs import BenchWorker, Job, WorkSpec, failed_rows
from rfprm_tts.errors import ConfigError, RfprmError

log = logging.getLogger(__name__)
Rows = list[dict[str, Any]]


class BenchActor:
    """The body of one replica: a BenchWorker built once, in the actor's process."""

    def __init__(self, spec: WorkSpec):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the driver's bar counts every replica's work
        self.worker = BenchWorker(spec)

    async def resolved(self) -> dict[str, Any]:
        return await self.worker.resolved()

    async def rows(self, job: Job) -> Rows:
        return await self.worker.rows(job)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'rfprm-tts[ray]'") from None
    return ray


# How a driver gets a cluster's token: Ray reads RAY_AUTH_TOKEN, else the file named by
# RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.
AUTH_FIX = (
    "put the cluster's token (`ray get-auth-token` on its head) in RAY_AUTH_TOKEN, in a file named by "
    "RAY_AUTH_TOKEN_PATH or in ~/.ray/auth_token, and leave RAY_AUTH_MODE unset or set it to token"
)


def connect(ray: Any, address: str | None, log_to_driver: bool = True) -> None:
    """`ray.init(address)` authenticated as the cluster asks; a refusal is one clear RfprmError.

    Since Ray 2.5x a cluster may run in token mode: it accepts only drivers that send its
    token, which Ray reads from RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else
    ~/.ray/auth_token. Ray sends it when RAY_AUTH_MODE=token, or, with RAY_AUTH_MODE unset,
    for address "auto" when it finds a token; for HOST:PORT `_authenticate` does the same."""
    try:
        if address is not None and _gcs_is_listening(address):
            _authenticate(address)
        ray.init(address=address, log_to_driver=log_to_driver)
    except ray.exceptions.AuthenticationError:  # RAY_AUTH_MODE=token and no token anywhere
        raise RfprmError(f"RAY_AUTH_MODE=token but Ray found no authentication token; {AUTH_FIX}") from None
    except ConnectionError as exc:
        if not _refused_for_authentication(exc):
            raise
        raise RfprmError(_refused(address or "the Ray cluster")) from None


def _gcs_is_listening(address: str) -> bool:
    """Whether something accepts TCP at a HOST:PORT address ("auto" and ray:// are not one)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return False
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return False
    return True


def _authenticate(address: str) -> None:
    """Ask the cluster's GCS once before `ray.init`, which retries a refused connection for
    about 20 s and then says only "Failed to connect". When the cluster wants a token and
    RAY_AUTH_MODE is unset, send the token Ray finds, as `ray.init` does for "auto". Never
    otherwise: a driver in token mode cannot start actors on a cluster without it."""
    from ray._private.authentication.authentication_token_setup import (
        ensure_token_if_auth_enabled,
        maybe_enable_token_auth_if_token_available,
    )

    # In token mode without a token, AuthenticationError here; a GcsClient would abort the process.
    ensure_token_if_auth_enabled(None, create_token_if_missing=False)
    if not _refuses_this_driver(address):
        return
    if "RAY_AUTH_MODE" not in os.environ and maybe_enable_token_auth_if_token_available(warn_if_disabled=False):
        log.info("the Ray cluster at %s uses token authentication; sending the token Ray found", address)
        if not _refuses_this_driver(address):
            return
    raise RfprmError(_refused(address))


def _refuses_this_driver(address: str) -> bool:
    """Whether the GCS at `address` rejects this process's authentication (mode and token)."""
    # the client ray.init uses; a GCS answers it at once. ray/_raylet.pyi, the stub of the
    # compiled module, leaves GcsClient out
    from ray._raylet import GcsClient  # type: ignore[attr-defined]
    from ray.exceptions import AuthenticationError, RpcError

    try:
        GcsClient(address=address)
        return False
    except AuthenticationError:
        return True
    except RpcError:  # no GCS answered: not for us to judge; ray.init retries, then says so
        return False


def _refused_for_authentication(exc: BaseException) -> bool:
    """Whether a failed `ray.init` was an authentication refusal: Ray raises a plain
    ConnectionError whose causes name it."""
    cause: BaseException | None = exc
    while cause is not None:
        if "InvalidAuthToken" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _refused(address: str) -> str:
    return f"Ray refused the connection to {address}: authentication token missing or wrong; {AUTH_FIX}"


class RayExecutor:
    """`replicas` actors of `cpus_per_replica` CPUs and `gpus_per_replica` GPUs (default: 1
    when the cluster has GPUs, else 0), each solving `concurrency` problems at once.

    `address`: a running cluster ("auto", "HOST:PORT"); None follows `ray.init()`
    (RAY_ADDRESS, else a new local Ray instance). A cluster in token mode needs its token
    here (see `connect`)."""

    def __init__(
        self,
        replicas: int = 1,
        *,
        address: str | None = None,
        concurrency: int = 4,
        cpus_per_replica: float = 1.0,
        gpus_per_replica: float | None = None,
        max_attempts: int = 3,
    ):
        if replicas < 1 or concurrency < 1 or max_attempts < 1:
            raise ConfigError("--replicas, --concurrency and max_attempts must be at least 1")
        self.replicas, self.address, self.concurrency = replicas, address, concurrency
        self.cpus_per_replica, self.gpus_per_replica, self.max_attempts = (
            cpus_per_replica,
            gpus_per_replica,
            max_attempts,
        )
        self._ray: Any = None
        self._spec: WorkSpec | None = None
        self._actors: list[Any] = []
        self._up: set[int] = set()  # replicas with models loaded
        self._loading: dict[asyncio.Future, int] = {}  # replicas (re)starting: their resolved() call

    async def start(self, spec: WorkSpec) -> dict[str, Any]:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            connect(ray, self.address)
        self._spec = spec
        gpus = self._fit(ray.cluster_resources())
        actor = ray.remote(max_restarts=-1, max_task_retries=0)(BenchActor)
        options = {"num_cpus": self.cpus_per_replica, "num_gpus": gpus, "max_concurrency": self.concurrency}
        self._actors = [actor.options(**options).remote(spec) for _ in range(self.replicas)]
        for replica in range(self.replicas):
            self._watch(replica)
        log.info(
            "%d Ray replica(s) of %g CPU, %g GPU; waiting for the first to load its models",
            self.replicas,
            self.cpus_per_replica,
            gpus,
        )
        while self._loading:  # the others join as they come up
            done, _ = await asyncio.wait(list(self._loading), return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                replica = self._loading.pop(future)
                try:
                    resolved = future.result()
                except ray.exceptions.RayTaskError as exc:  # the solver could not be built
                    cause = exc.cause
                    raise (
                        cause if isinstance(cause, RfprmError) else RfprmError(f"a Ray replica failed to start: {exc}")
                    ) from exc
                except ray.exceptions.RayActorError as exc:
                    self._lost(replica, exc)
                    continue
                self._up.add(replica)
                return resolved
        raise RfprmError("no Ray replica could start (see the errors above)")

    def _fit(self, cluster: dict[str, float]) -> float:
        """GPUs per replica; a clear error when not even one replica fits in the cluster."""
        cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
        per_gpu = self.gpus_per_replica if self.gpus_per_replica is not None else (1.0 if gpus else 0.0)
        if self.cpus_per_replica > cpus or per_gpu > gpus:
            raise ConfigError(
                f"a replica needs {self.cpus_per_replica:g} CPU and {per_gpu:g} GPU, and the Ray cluster has "
                f"{cpus:g} CPUs and {gpus:g} GPUs in all; lower --cpus-per-replica/--gpus-per-replica "
                "or add nodes (`ray start --address=HEAD:PORT` on each)"
            )
        room = [total / need for total, need in ((cpus, self.cpus_per_replica), (gpus, per_gpu)) if need > 0]
        fit = int(min(room, default=self.replicas))
        if fit < self.replicas:
            log.warning(
                "only %d of %d replicas fit in the Ray cluster at once; the rest wait for room", fit, self.replicas
            )
        return per_gpu

    def _watch(self, replica: int) -> None:
        """Take `replica` off duty until its resolved() call answers (models loaded)."""
        self._up.discard(replica)
        if replica not in self._loading.values():
            self._loading[asyncio.ensure_future(self._actors[replica].resolved.remote())] = replica

    async def run(self, jobs: Sequence[Job]) -> AsyncIterator[tuple[Job, Rows]]:
        ray, spec = self._ray, self._spec
        assert ray is not None and spec is not None, "start() first"
        queue, deaths = deque(jobs), Counter[Job]()
        running: dict[asyncio.Future, tuple[Job, int]] = {}
        load = Counter[int]()
        waiting_logged = False
        while queue or running:
            for replica in sorted(self._up, key=lambda r: load[r]):
                while queue and load[replica] < self.concurrency:
                    job = queue.popleft()
                    running[asyncio.ensure_future(self._actors[replica].rows.remote(job))] = (job, replica)
                    load[replica] += 1
            if not running and not self._loading:
                raise RfprmError("every Ray replica is dead; rerun the same command to resume the run")
            if not running and not waiting_logged:
                log.warning("no Ray replica is up; waiting for Ray to restart one (Ctrl-C stops; rerun to resume)")
            waiting_logged = not running
            done, _ = await asyncio.wait([*running, *self._loading], return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                if future in self._loading:
                    self._revived(self._loading.pop(future), future)
                    continue
                job, replica = running.pop(future)
                load[replica] -= 1
                try:
                    rows = future.result()
                except ray.exceptions.RayActorError as exc:
                    self._watch(replica)
                    deaths[job] += 1
                    if deaths[job] >= self.max_attempts:
                        yield job, failed_rows(job, spec, f"its Ray replica died {deaths[job]} times: {exc}")
                    else:
                        log.warning(
                            "Ray replica %d died (%s); %s goes to another replica", replica, type(exc).__name__, job
                        )
                        queue.appendleft(job)
                except ray.exceptions.RayError as exc:  # e.g. a job that cannot be sent
                    yield job, failed_rows(job, spec, exc)
                else:
                    yield job, rows

    def _revived(self, replica: int, future: asyncio.Future) -> None:
        try:
            future.result()
        except self._ray.exceptions.RayActorError as exc:
            self._lost(replica, exc)
        except self._ray.exceptions.RayError as exc:
            log.warning("Ray replica %d failed to restart and is left out: %s", replica, exc)
        else:
            self._up.add(replica)
            log.info("Ray replica %d is up", replica)

    def _lost(self, replica: int, exc: Exception) -> None:
        """A replica's (re)start call failed: dead for good (ActorDiedError: Ray will not
        restart it), else unavailable for now (watched again)."""
        if isinstance(exc, self._ray.exceptions.ActorDiedError):
            log.warning("Ray replica %d is dead and left out: %s", replica, exc)
        else:
            self._watch(replica)

    async def aclose(self) -> None:
        for future in self._loading:
            future.cancel()
        for actor in self._actors:
            self._ray.kill(actor)
