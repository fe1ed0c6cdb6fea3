"""Batches of independent jobs (`v3kd batch`): a jobs file, one process per job, engines local / torchrun / ray."""
