"""The training loop, its callbacks, losses and checkpoints."""
