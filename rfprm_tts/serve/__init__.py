"""`rfprm serve`: PRM reranking behind an OpenAI-compatible API (see app.py)."""

from rfprm_tts.serve.app import create_app
from rfprm_tts.serve.server import serve, serving

__all__ = ["create_app", "serve", "serving"]
