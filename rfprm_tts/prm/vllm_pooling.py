"""Step-tag PRMs hosted on vLLM's pooling runner: in-process, or a remote server over HTTP.

vLLM names the ReasonFlux/Qwen PRM architecture Qwen2ForProcessRewardModel. Its
`token_classify` pooling with `step_tag_id` returns one [P(incorrect), P(correct)] row per
step tag, the same numbers the transformers scorer reads. A token-level PRM (readout
"token_min") needs a row per token: the engine then pools with tok_pooling_type "ALL". Over
HTTP that is fixed when the server starts: `--pooler-config '{"step_tag_id": ID}'` (151651 by
default) for a step-tag PRM, `'{"tok_pooling_type": "ALL"}'` for a token-level one.
"""

from __future__ import annotations

import threading
from typing import Any

from rfprm_tts.errors import ConfigError, RfprmError
from rfprm_tts.prm.step_tag import (
    StepTagInputs,
    checkpoint_aggregation,
    checkpoint_readout,
)
from rfprm_tts.settings import PRMSettings


def checkpoint_choices(settings: PRMSettings, path: str) -> tuple[str, str | None]:
    """The read-out and the aggregation to use, from the settings and the checkpoint's config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    return checkpoint_readout(settings.readout, config), checkpoint_aggregation(config)


class VLLMPoolingScorer(StepTagInputs):
    """In-process: `LLM(model, runner="pooling")` and `encode(..., pooling_task="token_classify")`."""

    def __init__(self, settings: PRMSettings, path: str):
        from vllm import LLM
        from vllm.config import PoolerConfig

        v = settings.vllm
        self.readout, self.aggregation = checkpoint_choices(settings, path)
        dtype = settings.dtype if settings.dtype != "auto" else None
        engine_args: dict[str, Any] = dict(
            model=path, runner="pooling", gpu_memory_utilization=v.gpu_memory_utilization,
            tensor_parallel_size=v.tensor_parallel_size, enforce_eager=v.enforce_eager,
        )
        if dtype:
            engine_args["dtype"] = dtype
        if self.readout == "token_min":
            engine_args["pooler_config"] = PoolerConfig(tok_pooling_type="ALL")
        if v.max_model_len is not None:
            engine_args["max_model_len"] = v.max_model_len
        self.llm = LLM(**{**engine_args, **v.engine_kwargs})
        self.tokenizer = self.llm.get_tokenizer()
        self.step_tag, self.system_prompt = settings.step_tag, settings.system_prompt
        self.step_tag_id = self.tokenizer.convert_tokens_to_ids(settings.step_tag)
        self.max_length = settings.max_length or self.llm.llm_engine.model_config.max_model_len
        self.overflow, self.window_overlap = settings.overflow, settings.window_overlap
        self.num_parameters = None
        self._lock = threading.Lock()

    def _rows(self, batch: list[list[int]]) -> tuple[list[list[list[float]]], int]:
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        with self._lock:
            outputs = self.llm.encode(
                [TokensPrompt(prompt_token_ids=ids) for ids in batch],
                pooling_params=PoolingParams(step_tag_id=self.step_tag_id)
                if self.readout == "step_tag"
                else PoolingParams(),
                pooling_task="token_classify",
                use_tqdm=False,
            )
        return [out.outputs.data.float().tolist() for out in outputs], 0  # vLLM packs, no padding

    def close(self) -> None:
        shutdown = getattr(getattr(self.llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            shutdown()


class HTTPPoolingScorer(StepTagInputs):
    """A remote vLLM pooling server: `POST {base_url}/pooling`, with the generator's retry
    policy (timeouts, connection errors, 429 with Retry-After and 5xx retried; other 4xx not)."""

    def __init__(self, settings: PRMSettings, path: str):
        import openai
        from transformers import AutoTokenizer

        if not settings.base_url:
            raise ConfigError("the http PRM backend needs prm.base_url (the vLLM server's root URL)")
        key = settings.api_key.get_secret_value() if settings.api_key else "EMPTY"
        self.client = openai.OpenAI(
            base_url=settings.base_url.rstrip("/"), api_key=key, timeout=settings.timeout_s, max_retries=0
        )
        self.settings = settings
        self.model = settings.served_model_name or path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.step_tag, self.system_prompt = settings.step_tag, settings.system_prompt
        self.step_tag_id = self.tokenizer.convert_tokens_to_ids(settings.step_tag)
        self.readout, self.aggregation = checkpoint_choices(settings, path)
        self.max_length = settings.max_length  # else the server checks its own limit
        self.overflow, self.window_overlap = settings.overflow, settings.window_overlap
        self.num_parameters = None

    def _rows(self, batch: list[list[int]]) -> tuple[list[list[list[float]]], int]:
        from rfprm_tts.http_retry import describe_failure, retrying

        s = self.settings
        body = {"model": self.model, "input": batch, "task": "token_classify"}
        attempts = 0
        try:
            for attempt in retrying(s.max_retries, s.backoff_s, s.backoff_max_s, asynchronous=False):
                with attempt:
                    attempts += 1
                    response = self.client.post("/pooling", body=body, cast_to=object)
        except Exception as exc:
            raise RfprmError(describe_failure(exc, self.settings.base_url, attempts, "prm")) from exc
        data = sorted(response["data"], key=lambda item: item["index"])
        return [item["data"] for item in data], 0
