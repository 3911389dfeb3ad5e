"""The proxy's Prometheus metrics, in a registry of its own (several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rfprm_tts.trajectory import SolveResult


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rfprm_requests", "Chat-completion requests, by HTTP status.", ["status"], registry=r)
        self.latency = Histogram(
            "rfprm_request_seconds",
            "Time from request to last byte.",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.in_flight = Gauge("rfprm_requests_in_flight", "Requests being served.", registry=r)
        self.generated_tokens = Counter("rfprm_generated_tokens", "Tokens generated upstream.", registry=r)
        self.prompt_tokens = Counter("rfprm_prompt_tokens", "Prompt tokens sent upstream.", registry=r)
        self.prm_tokens = Counter("rfprm_prm_tokens", "Tokens the PRM scored.", registry=r)
        self.upstream_errors = Counter(
            "rfprm_upstream_errors", "Failed upstream samples, and requests failed by the upstream.", registry=r
        )
        self.cancelled = Counter("rfprm_cancelled_requests", "Requests whose client went away.", registry=r)
        self.batch_requests = Histogram(
            "rfprm_prm_batch_requests",
            "Requests whose PRM work shared one batched call.",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.batch_trajectories = Histogram(
            "rfprm_prm_batch_trajectories",
            "Trajectories in one batched PRM call (one longer than 8 KiB counting once per 8 KiB).",
            registry=r,
            buckets=(1, 4, 16, 64, 128, 256, 512, 1024),
        )

    def start(self) -> None:
        self.in_flight.inc()

    def finish(self, status: int, seconds: float) -> None:
        self.in_flight.dec()
        self.requests.labels(status=str(status)).inc()
        self.latency.observe(seconds)

    def record_usage(self, result: SolveResult) -> None:
        usage = result.usage
        self.generated_tokens.inc(usage.generated_tokens)
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.prm_tokens.inc(usage.prm_tokens)
        self.upstream_errors.inc(sum(not c.ok for c in result.candidates))

    def observe_batch(self, requests: int, trajectories: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_trajectories.observe(trajectories)

    def render(self) -> bytes:
        return generate_latest(self.registry)
