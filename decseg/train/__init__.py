"""Training: the loop, the step, optimizer and schedule, checkpoints, DDP, validation."""
