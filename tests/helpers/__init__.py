"""Shared test helpers: float64 references, tiny configs and worlds, the XLA environment, test-data generators."""
