"""Runners on vLLM's pooling runner: in-process, or a remote server over HTTP.

vLLM names the ReasonFlux/Qwen PRM architecture Qwen2ForProcessRewardModel. Its
`token_classify` pooling with `step_tag_id` returns one [P(incorrect), P(correct)] row per
step tag, the rows a step-tag format reads. A token-level format (rows at every token) needs
the engine to pool with tok_pooling_type "ALL". Over HTTP that is fixed when the server
starts: `--pooler-config '{"step_tag_id": ID}'` (151651 by default) for a step-tag PRM,
`'{"tok_pooling_type": "ALL"}'` for a token-level one.

Prefix reuse (in-process, a token-level format, prm.incremental): vLLM's prefix cache serves a
prompt's cached blocks, and a pooling reply then holds rows for the uncached tail only (vLLM
0.32 skips the cache for token pooling by default for that reason; `skip_reading_prefix_cache`
off asks for it; a vLLM without that field runs every prompt whole). The rows of the cached head are ones this runner returned before, for a prompt
that began the same way (`KnownRows`); a head it no longer holds is scored again without the
cache. Rows equal uncached scoring (tests/integration/test_vllm_pooling.py). Over HTTP the
server's default holds: every prompt is run whole.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from rfprm_tts.errors import ConfigError, RfprmError
from rfprm_tts.prm.protocol import Forwarded, InputFormat
from rfprm_tts.settings import PRMSettings


class VLLMPoolingRunner:
    """In-process: `LLM(model, runner="pooling")` and `encode(..., pooling_task="token_classify")`."""

    def __init__(self, settings: PRMSettings, path: str, rows: str, reuse: bool = False):
        from vllm import LLM, PoolingParams
        from vllm.config import PoolerConfig

        v = settings.vllm
        engine_args: dict[str, Any] = dict(
            model=path,
            runner="pooling",
            gpu_memory_utilization=v.gpu_memory_utilization,
            tensor_parallel_size=v.tensor_parallel_size,
            enforce_eager=v.enforce_eager,
        )
        if settings.dtype != "auto":
            engine_args["dtype"] = settings.dtype
        if rows == "all":
            engine_args["pooler_config"] = PoolerConfig(tok_pooling_type="ALL")
        if v.max_model_len is not None:
            engine_args["max_model_len"] = v.max_model_len
        # the cached head's rows come from KnownRows: needs rows at every token, outputs of a prefix
        # that later steps do not change, and a vLLM that can be asked to read its cache (0.32 can)
        readable = "skip_reading_prefix_cache" in PoolingParams.__struct_fields__
        on = reuse and rows == "all" and settings.incremental and readable
        self.known = KnownRows(settings.cache_max_tokens) if on else None
        if self.known is not None:
            engine_args["enable_prefix_caching"] = True
        llm = LLM(**{**engine_args, **v.engine_kwargs})
        self.llm: LLM | None = llm  # None once closed
        self.max_model_len = llm.llm_engine.model_config.max_model_len
        self.num_parameters = None  # vLLM does not report it uniformly
        self._lock = threading.Lock()

    def run(self, fmt: InputFormat, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        from vllm import PoolingParams

        if self.llm is None:
            raise RfprmError("this PRM runner is closed")
        if fmt.rows == "tags":
            params = PoolingParams(step_tag_id=fmt.tag_id)
        elif self.known is not None:  # rows for the uncached tail only (above)
            params = PoolingParams(skip_reading_prefix_cache=False)
        else:
            params = PoolingParams()
        with self._lock:
            tails = self._encode(inputs, params)
            if self.known is None:
                return Forwarded(tails, [len(ids) for ids in inputs], 0)  # vLLM packs: no padding
            rows = self.known.complete(inputs, tails)
            unknown = [i for i, got in enumerate(rows) if got is None]
            if unknown:  # a head this runner no longer holds: run those prompts whole
                again = self._encode([inputs[i] for i in unknown], PoolingParams(skip_reading_prefix_cache=True))
                for i, got in zip(unknown, again):
                    rows[i] = got
                    self.known.add(inputs[i], got)
        run = [len(tail) for tail in tails]
        for i in unknown:
            run[i] += len(inputs[i])
        return Forwarded([r or [] for r in rows], run, 0)

    def _encode(self, inputs: list[list[int]], params: Any) -> list[list[list[float]]]:
        from vllm.inputs import TokensPrompt

        assert self.llm is not None
        outputs = self.llm.encode(
            [TokensPrompt(prompt_token_ids=ids) for ids in inputs],
            pooling_params=params,
            pooling_task="token_classify",
            use_tqdm=False,
        )
        return [out.outputs.data.float().tolist() for out in outputs]

    def close(self) -> None:
        if self.llm is not None:
            shutdown = getattr(self.llm.llm_engine, "shutdown", None)  # not in every vLLM version
            if callable(shutdown):
                shutdown()
        self.llm = None


class KnownRows:
    """The rows of token sequences scored before (least recently used dropped past
    `max_tokens`), to complete replies that hold rows for an uncached tail only."""

    def __init__(self, max_tokens: int):
        self.max_tokens, self.tokens = max_tokens, 0
        self._rows: OrderedDict[tuple[int, ...], list[list[float]]] = OrderedDict()

    def add(self, ids: list[int], rows: list[list[float]]) -> None:
        key = tuple(ids)
        if key not in self._rows:
            self.tokens += len(ids)
        self._rows[key] = rows
        self._rows.move_to_end(key)
        while self.tokens > self.max_tokens and len(self._rows) > 1:
            dropped, _ = self._rows.popitem(last=False)
            self.tokens -= len(dropped)

    def head(self, ids: list[int], count: int) -> list[list[float]] | None:
        """The rows of ids[:count], from a known sequence that begins so (None: none does)."""
        start = tuple(ids[:count])
        for key in reversed(self._rows):
            if len(key) >= count and key[:count] == start:
                self._rows.move_to_end(key)
                return self._rows[key][:count]
        return None

    def complete(self, inputs: list[list[int]], tails: list[list[list[float]]]) -> list[list[list[float]] | None]:
        """Each input's whole rows: its tail after the head it shares with a known sequence
        (None: no known sequence has it). Whole replies are learnt first, since a prompt may
        have been cached by another of the same batch."""
        rows: list[list[list[float]] | None] = [None] * len(inputs)
        for i, (ids, tail) in enumerate(zip(inputs, tails)):
            if len(tail) == len(ids):
                rows[i] = tail
                self.add(ids, tail)
        for i, (ids, tail) in enumerate(zip(inputs, tails)):
            if rows[i] is None and (head := self.head(ids, len(ids) - len(tail))) is not None:
                rows[i] = whole = head + tail
                self.add(ids, whole)
        return rows


class HTTPPoolingRunner:
    """Remote vLLM pooling servers: `POST {url}/pooling`, with the shared retry policy
    (rfprm_tts.runtime.http_retry). With replicas, each question's inputs go to one server chosen by a
    hash of the question (its prefix cache serves the question's later calls); a server that
    still fails after the retries is skipped for `replica_cooldown_s` and the next one answers."""

    def __init__(self, settings: PRMSettings, path: str):
        import openai

        if not settings.base_url:
            raise ConfigError("the http PRM backend needs prm.base_url (the vLLM server's root URL)")
        from rfprm_tts.runtime.http_retry import Replicas

        key = settings.api_key.get_secret_value() if settings.api_key else "EMPTY"
        urls = [url.rstrip("/") for url in [settings.base_url, *settings.replicas]]
        self.replicas = Replicas(urls, settings.replica_cooldown_s)
        self.clients = [
            openai.OpenAI(base_url=url, api_key=key, timeout=settings.timeout_s, max_retries=0) for url in urls
        ]
        self.settings = settings
        self.model = settings.served_model_name or path
        self.num_parameters = None

    def run(self, fmt: InputFormat, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        groups: dict[str, list[int]] = {}  # a question's inputs go to its server together
        for i, question in enumerate(questions):
            groups.setdefault(question, []).append(i)
        rows: list = [None] * len(inputs)
        for question, members in groups.items():
            for i, got in zip(members, self._post_from(question, [inputs[i] for i in members])):
                rows[i] = got
        return Forwarded(rows, [len(ids) for ids in inputs], 0)

    def _post_from(self, question: str, batch: list[list[int]]) -> list:
        """The rows of `batch` from the first server that answers, the question's own first."""
        errors = []
        for server in self.replicas.order(question):
            try:
                return self._post(server, batch)
            except RfprmError as exc:
                self.replicas.failed(server)
                errors.append(str(exc))
        raise RfprmError("every PRM server failed: " + "; ".join(errors))

    def _post(self, replica: int, batch: list[list[int]]) -> list:
        from rfprm_tts.runtime.http_retry import describe_failure, retrying

        s = self.settings
        body = {"model": self.model, "input": batch, "task": "token_classify"}
        attempts = 0
        try:
            for attempt in retrying(s.max_retries, s.backoff_s, s.backoff_max_s, asynchronous=False):
                with attempt:
                    attempts += 1
                    response = self.clients[replica].post("/pooling", body=body, cast_to=object)
        except Exception as exc:
            raise RfprmError(describe_failure(exc, self.replicas.urls[replica], attempts, "prm")) from exc
        # openai's post types its answer as cast_to, object here; with object it is the parsed JSON
        return [item["data"] for item in sorted(response["data"], key=lambda item: item["index"])]  # type: ignore[index]

    def close(self) -> None:
        for client in self.clients:
            client.close()
