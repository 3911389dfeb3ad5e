"""The search a strategy runs in: its context (generator and PRM with the bookkeeping done once), the token budget, and the tree of every candidate."""
