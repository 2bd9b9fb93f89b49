"""Evaluation of a model on a split: loss, accuracy, top-k, per-class accuracy, confusion."""
