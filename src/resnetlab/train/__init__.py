"""Training: config and recipes, the loop, optimisers and schedules, checkpoints, metrics."""
