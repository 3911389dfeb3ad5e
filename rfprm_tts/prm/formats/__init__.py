"""Input formats: how a verifier reads a trajectory (encode, where the answer starts, which outputs to read). Each registers itself by name (prm/registry.py)."""
