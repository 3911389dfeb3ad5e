"""The `rfprm` command line: one module per command (each adds its parser and runs it), the
program that parses and dispatches (program.py), and the options they share (arguments.py)."""

from rfprm_tts.cli.program import command_parsers, main

__all__ = ["command_parsers", "main"]
