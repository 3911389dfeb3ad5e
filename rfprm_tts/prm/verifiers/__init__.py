"""Verifiers that are not a reward model: the generator's own confidence, and a chat model as judge."""
