"""Experiments people cite: `python -m memory_agents.experiments.match` (cells on Visual Match)."""
