"""Training: the loop, optimisers and schedules, data parallelism, run logs, progress and curves."""
