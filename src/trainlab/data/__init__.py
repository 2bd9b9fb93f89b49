"""Datasets, preprocessing, augmentation and the two loading paths."""
