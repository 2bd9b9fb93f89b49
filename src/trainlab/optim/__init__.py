"""Optimisers (torch.optim, with parameter groups and the LR scaling rule) and LR schedules."""
