"""In-process generator on a transformers causal LM.

For small models and machines without vLLM (macOS laptops, CI): it starts in seconds where a
vLLM engine takes most of a minute on a CPU. Semantics match the OpenAI backend: the stop
string is not part of the returned text, and a prefix is continued, not re-answered.
"""

from __future__ import annotations

import asyncio
import threading

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rfprm_tts.demo import resolve_model
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators.base import Completion, GenerationRequest, GenerationResult
from rfprm_tts.settings import GeneratorSettings
from rfprm_tts.torch_utils import pick_device, pick_dtype


class TransformersGenerator:
    def __init__(self, settings: GeneratorSettings):
        self.settings = settings
        path = resolve_model(settings.model, "generator")
        self.device = pick_device(settings.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=pick_dtype(settings.dtype, self.device)
        ).to(self.device).eval()
        self._lock = threading.Lock()  # one generate() at a time: torch already uses every core
        self._calls = 0

    async def aclose(self) -> None:
        pass

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.n < 1:
            raise ConfigError(f"n must be >= 1, got {request.n}")
        return await asyncio.to_thread(self._generate, request)

    def prompt_ids(self, question: str, prefix: str = "") -> list[int]:
        """The chat-templated question, then the partial answer to continue (if any)."""
        messages = [{"role": "user", "content": question}]
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text + prefix, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def _generate(self, request: GenerationRequest) -> GenerationResult:
        s = self.settings
        prompt = self.prompt_ids(request.question, request.prefix)
        stop = [*s.stop, *(request.stop or [])]
        eos = self.tokenizer.eos_token_id
        sample = s.temperature > 0
        with self._lock:
            if s.seed is not None:
                torch.manual_seed(s.seed + self._calls)
            self._calls += 1
            output = self.model.generate(
                torch.tensor([prompt], device=self.device),
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=self.device),
                do_sample=sample,
                temperature=s.temperature if sample else None,
                top_p=s.top_p if sample else None,
                top_k=None,
                max_new_tokens=request.max_tokens or s.max_tokens,
                num_return_sequences=request.n,
                stop_strings=stop or None,
                tokenizer=self.tokenizer,
                eos_token_id=eos,
                pad_token_id=eos,
            )
        result = GenerationResult(prompt_tokens=len(prompt), calls=1)
        for row in output[:, len(prompt):].tolist():
            completion = self._completion(row, eos, stop)
            result.generated_tokens += completion.tokens or 0
            result.completions.append(completion)
        return result

    def _completion(self, new_ids: list[int], eos: int, stop: list[str]) -> Completion:
        """Cut padding after EOS, and the stop string with what follows it (as servers do).
        EOS counts as a generated token; the padding after a stop string does not."""
        end = new_ids.index(eos) if eos in new_ids else len(new_ids)
        text = self.tokenizer.decode(new_ids[:end], skip_special_tokens=True)
        hits = [text.find(s) for s in stop if s in text]
        if hits:
            return Completion(text=text[: min(hits)], finish_reason="stop", tokens=end)
        if end < len(new_ids):
            return Completion(text=text, finish_reason="stop", tokens=end + 1)
        return Completion(text=text, finish_reason="length", tokens=end)
