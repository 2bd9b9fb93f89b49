"""Layers and their one-time-setup choices: activations, normalisation, initialisation, models."""
