"""Training: the one driver (loop, state, resume, budget, progress), optimisers and schedules, field
fitting, splat fitting with density control and initialisation."""
