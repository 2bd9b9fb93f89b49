"""Using a trained run: load it (Predictor), predict, export, evaluate, figures of a run."""
