"""The engine: build a run's parts, take optimisation steps, loop over them, checkpoint."""
