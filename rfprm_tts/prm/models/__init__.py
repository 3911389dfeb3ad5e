"""Verifier model classes for transformers: decoder body + head, and Qwen2ForProcessRewardModel without remote code."""
