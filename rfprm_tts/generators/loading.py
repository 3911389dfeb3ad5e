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


# How a generator's errors name its settings, and how the same words read for the draft section
DRAFT_WORDS = (
    ("RFPRM_GENERATOR__", "RFPRM_DRAFT__"),
    ("generator.", "draft."),
    ("the generator model", "the draft model"),
    ("the generator weights", "the draft weights"),
)


def build_draft(settings: GeneratorSettings) -> Generator:
    """`build_generator` for the `draft` section: its errors name the draft's settings (a
    backend's messages say "generator.base_url", which a user of the draft would set in vain)."""
    from rfprm_tts.errors import RfprmError

    try:
        return build_generator(settings)
    except RfprmError as exc:
        text = str(exc)
        for generator_word, draft_word in DRAFT_WORDS:
            text = text.replace(generator_word, draft_word)
        raise type(exc)(text) from None
