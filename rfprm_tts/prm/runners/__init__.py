"""Runners: how a verifier model is run (transformers batched or incremental, vLLM pooling in-process or over HTTP)."""
