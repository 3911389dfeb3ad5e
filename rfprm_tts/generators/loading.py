"""`build_generator(settings)`: the backend `GeneratorSettings.backend` names, imported only when chosen."""

from __future__ import annotations

from rfprm_tts.generators.base import Generator
from rfprm_tts.settings import GeneratorSettings


def build_generator(settings: GeneratorSettings) -> Generator:
    if settings.backend == "openai":
        from rfprm_tts.generators.openai import OpenAIGenerator

        return OpenAIGenerator(settings)
    if settings.backend == "vllm":
        from rfprm_tts.generators.vllm import VLLMGenerator

        return VLLMGenerator(settings)
    from rfprm_tts.generators.transformers import TransformersGenerator

    return TransformersGenerator(settings)
