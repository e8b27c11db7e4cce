"""Execution levers that keep the mathematics: precision, memory format, CPU kernels and memory.

Nothing in config, models, losses or methods imports this package; train/ resolves the levers
once into an :class:`~decseg.accel.plan.ExecutionPlan` and applies it.
"""
