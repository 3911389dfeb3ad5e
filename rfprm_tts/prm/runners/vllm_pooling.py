"""Runners on vLLM's pooling runner: in-process, or a remote server over HTTP.

vLLM names the ReasonFlux/Qwen PRM architecture Qwen2ForProcessRewardModel. Its
`token_classify` pooling with `step_tag_id` returns one [P(incorrect), P(correct)] row per
step tag, the rows a step-tag format reads. A token-level format (rows at every token) needs
the engine to pool with tok_pooling_type "ALL". Over HTTP that is fixed when the server
starts: `--pooler-config '{"step_tag_id": ID}'` (151651 by default) for a step-tag PRM,
`'{"tok_pooling_type": "ALL"}'` for a token-level one.
"""

from __future__ import annotations

import threading
from typing import Any

from rfprm_tts.errors import ConfigError, RfprmError
from rfprm_tts.prm.protocol import Forwarded, InputFormat
from rfprm_tts.settings import PRMSettings


class VLLMPoolingRunner:
    """In-process: `LLM(model, runner="pooling")` and `encode(..., pooling_task="token_classify")`."""

    def __init__(self, settings: PRMSettings, path: str, rows: str):
        from vllm import LLM
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
        llm = LLM(**{**engine_args, **v.engine_kwargs})
        self.llm: LLM | None = llm  # None once closed
        self.max_model_len = llm.llm_engine.model_config.max_model_len
        self.num_parameters = None  # vLLM does not report it uniformly
        self._lock = threading.Lock()

    def run(self, fmt: InputFormat, questions: list[str], inputs: list[list[int]]) -> Forwarded:
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        if self.llm is None:
            raise RfprmError("this PRM runner is closed")
        params = PoolingParams(step_tag_id=fmt.tag_id) if fmt.rows == "tags" else PoolingParams()
        with self._lock:
            outputs = self.llm.encode(
                [TokensPrompt(prompt_token_ids=ids) for ids in inputs],
                pooling_params=params,
                pooling_task="token_classify",
                use_tqdm=False,
            )
        rows = [out.outputs.data.float().tolist() for out in outputs]
        return Forwarded(rows, [len(ids) for ids in inputs], 0)  # vLLM packs: no padding

    def close(self) -> None:
        if self.llm is not None:
            shutdown = getattr(self.llm.llm_engine, "shutdown", None)  # not in every vLLM version
            if callable(shutdown):
                shutdown()
        self.llm = None


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
