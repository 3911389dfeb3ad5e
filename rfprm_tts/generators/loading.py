"""`build_generator(settings)`: the backend `GeneratorSettings.backend` names, imported only when chosen."""

from __future__ import annotations

from rfprm_tts.generators.base import Generator
from rfprm_tts.settings import GeneratorSettings, SideRole


def build_generator(settings: GeneratorSettings, section: str = "generator") -> Generator:
    """The backend's generator; `section` names its settings in the errors of its requests."""
    if settings.backend == "openai":
        from rfprm_tts.generators.openai import OpenAIGenerator

        return OpenAIGenerator(settings, section)
    if settings.backend == "vllm":
        from rfprm_tts.generators.vllm import VLLMGenerator

        return VLLMGenerator(settings)
    from rfprm_tts.generators.transformers import TransformersGenerator

    return TransformersGenerator(settings)


def build_side(role: SideRole, settings: GeneratorSettings) -> Generator:
    """`build_generator` for the `draft` or `selector` section: its errors name that section's
    settings (a backend's messages say "generator.base_url", which a user of the draft would
    set in vain), the errors of its requests too."""
    from rfprm_tts.errors import RfprmError

    try:
        return build_generator(settings, role)
    except RfprmError as exc:
        text = str(exc)
        for generator_word, side_word in (
            ("RFPRM_GENERATOR__", f"RFPRM_{role.upper()}__"),
            ("--base-url", f"--{role}-base-url"),
            ("generator.", f"{role}."),
            ("the generator model", f"the {role} model"),
            ("the generator weights", f"the {role} weights"),
        ):
            text = text.replace(generator_word, side_word)
        raise type(exc)(text) from None
