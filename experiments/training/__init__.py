"""The training loop: the `Trainer`, its checkpoints, EMA weights, batch order and the run folder's outputs."""
