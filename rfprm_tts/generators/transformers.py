"""In-process generator on a transformers causal LM.

For small models and machines without vLLM (macOS laptops, CI): it starts in seconds where a
vLLM engine takes most of a minute on a CPU. Semantics match the OpenAI backend: the stop
string is not part of the returned text, and a prefix is continued, not re-answered.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from rfprm_tts.chat import prompt_ids, require_chat_template
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Completion, GenerationRequest, GenerationResult
from rfprm_tts.generators.tool_text import read_calls_into, template_takes_tools
from rfprm_tts.runtime.model_names import checkpoint_path
from rfprm_tts.runtime.torch_utils import load_checked, pick_device, pick_dtype
from rfprm_tts.settings import GeneratorSettings
from rfprm_tts.trajectory import TopLogprob, top_logprob


class StopOnText(StoppingCriteria):
    """Stops a sequence once its decoded tail contains a stop string. (transformers' own
    `stop_strings` matches on token strings and misfires on some tokenizers.)"""

    def __init__(self, tokenizer, stops: list[str], prompt_length: int):
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_length = prompt_length  # only generated text can match, as on servers
        self.window = max(len(s) for s in stops) + 2  # tokens: each decodes to >= 1 character

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        start = max(self.prompt_length, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([any(s in tail for s in self.stops) for tail in tails], device=input_ids.device)


class StopWhenSet(StoppingCriteria):
    """Stops every sequence once `event` is set: the request's client went away, and the
    thread running generate() cannot be cancelled any other way."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TransformersGenerator:
    def __init__(self, settings: GeneratorSettings):
        self.settings = settings
        self.device = pick_device(settings.device, "generator.device")
        path = checkpoint_path(settings.model, "generator")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        require_chat_template(self.tokenizer, path, "generator")
        self.model = (
            load_checked(
                AutoModelForCausalLM.from_pretrained, path, "generator", dtype=pick_dtype(settings.dtype, self.device)
            )
            .to(self.device)
            .eval()
        )
        embedded = self.model.get_input_embeddings().num_embeddings
        if len(self.tokenizer) > embedded:
            raise ConfigError(
                f"the tokenizer of {path} has {len(self.tokenizer)} tokens but the model embeds only {embedded}: "
                "the tokenizer belongs to another model; copy the model's own tokenizer files into the checkpoint"
            )
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.sampling = settings.sampling()
        self._lock = threading.Lock()  # one generate() at a time: torch already uses every core

    async def aclose(self) -> None:
        pass

    @property
    def takes_tools(self) -> bool:
        """Tools go through the model's chat template, where it writes them; calls are read
        back in the Hermes format (generators/tool_text.py)."""
        return template_takes_tools(self.tokenizer)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.n < 1:
            raise ConfigError(f"n must be >= 1, got {request.n}")
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, request, cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # the thread runs on: its generate() stops at the next token
            raise

    @torch.inference_mode()
    def _generate(self, request: GenerationRequest, cancelled: threading.Event) -> GenerationResult:
        s = request.resolved(self.sampling)
        tools = request.tools.tools if request.tools else None
        prompt = prompt_ids(self.tokenizer, request.messages, request.prefix, tools)
        context = self.model.config.max_position_embeddings
        if len(prompt) >= context:  # attention over it would run for hours, then produce garbage
            raise ConfigError(
                f"the prompt takes {len(prompt):,} tokens but the generator's context is {context:,}; "
                "shorten the question (or the conversation)"
            )
        stop = list(s.stop)
        eos = self.tokenizer.eos_token_id
        sample = s.temperature > 0
        stopping = StoppingCriteriaList([StopWhenSet(cancelled)])
        if stop:
            stopping.append(StopOnText(self.tokenizer, stop, len(prompt)))
        with self._lock:
            if cancelled.is_set():  # its client left while it waited for the model
                return GenerationResult()
            if s.seed is not None:
                torch.manual_seed(s.seed)
            output = self.model.generate(
                torch.tensor([prompt], device=self.device),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=self.device),
                do_sample=sample,
                temperature=s.temperature if sample else None,
                top_p=s.top_p if sample else None,
                top_k=None,
                max_new_tokens=min(s.max_tokens, context - len(prompt)),
                num_return_sequences=request.n if sample else 1,
                stopping_criteria=stopping,
                eos_token_id=eos,
                pad_token_id=eos,
                return_dict_in_generate=True,
                output_scores=s.logprobs,
            )
        rows = output.sequences[:, len(prompt) :].tolist()
        logprobs: list[Any] = [None] * len(rows)
        tops: list[Any] = [[]] * len(rows)
        if s.logprobs:  # log-probabilities of the sampled tokens under the sampling distribution
            logprobs = self.model.compute_transition_scores(
                output.sequences, output.scores, normalize_logits=True
            ).tolist()
            tops = self._top_logprobs(output.scores, s.top_logprobs)
        if not sample:  # greedy: n identical answers
            rows, logprobs, tops = rows * request.n, logprobs * request.n, tops * request.n
        result = GenerationResult(prompt_tokens=len(prompt), calls=1)
        for row, row_logprobs, row_tops in zip(rows, logprobs, tops):
            completion = self._completion(row, eos, stop)
            if row_logprobs is not None:
                completion.logprobs = row_logprobs[: completion.tokens]
                completion.token_logprobs = [
                    {**top_logprob(self._token_text(t), value), "top_logprobs": top}
                    for t, value, top in zip(row, completion.logprobs, row_tops)
                ]
            result.generated_tokens += completion.tokens or 0
            result.completions.append(completion)
        if request.tools:
            read_calls_into(result.completions)
        return result

    def _top_logprobs(self, scores: tuple[torch.Tensor, ...], k: int) -> list[list[list[TopLogprob]]]:
        """Per row, per position: the k most likely tokens under the sampling distribution."""
        if k == 0:
            return [[[] for _ in scores] for _ in range(scores[0].shape[0])] if scores else []
        per_step = [torch.log_softmax(step.float(), dim=-1).topk(k) for step in scores]
        return [
            [
                [top_logprob(self._token_text(t), v) for t, v in zip(ids[row].tolist(), values[row].tolist())]
                for values, ids in per_step
            ]
            for row in range(scores[0].shape[0])
        ]

    def _token_text(self, token_id: int) -> str:
        """A token as text, as the answer's text is decoded: EOS and other special tokens empty."""
        text: str = self.tokenizer.decode([token_id], skip_special_tokens=True)  # type: ignore[assignment]
        return text

    def _completion(self, new_ids: list[int], eos: int, stop: list[str]) -> Completion:
        """Cut padding after EOS, and the stop string with what follows it (as servers do).
        EOS counts as a generated token; the padding after a stop string does not."""
        end = new_ids.index(eos) if eos in new_ids else len(new_ids)
        # transformers types decode() as str | list[str] for any input; one row of ids decodes to a str
        text: str = self.tokenizer.decode(new_ids[:end], skip_special_tokens=True)  # type: ignore[assignment]
        hits = sorted((text.find(s), s) for s in stop if s in text)
        if hits:
            at, matched = hits[0]
            return Completion(text=text[:at], finish_reason="stop", tokens=end, stop_reason=matched)
        if end < len(new_ids):
            return Completion(text=text, finish_reason="stop", tokens=end + 1)
        return Completion(text=text, finish_reason="length", tokens=end)
