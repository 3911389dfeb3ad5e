"""Errors that rfprm-tts raises on purpose. Each message names the problem and the fix."""


class RfprmError(Exception):
    """Base class: catch this to handle every error the library raises deliberately."""


class ConfigError(RfprmError, ValueError):
    """A setting or argument is invalid (empty prompt, n < 1, unknown strategy...)."""


class GenerationError(RfprmError):
    """The generator backend failed for every candidate (or could not be reached)."""


class MalformedResponseError(GenerationError):
    """The server answered, but not with a well-formed completion (bad JSON, missing choices)."""


class PRMLoadError(RfprmError):
    """A PRM checkpoint cannot be loaded as a process reward model."""


class PRMInputTooLongError(RfprmError):
    """A question + trajectory does not fit the PRM's context window."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, caught where a command knows what it saved: the message says what was kept and
    how to go on (the CLI prints `interrupted: <message>` and exits 130)."""
