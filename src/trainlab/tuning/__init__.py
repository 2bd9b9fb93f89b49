"""Hyperparameter search on Optuna: a space beside a recipe, stages from coarse to fine, and
the command center that compares the runs (lectures 002 and 004).

Named ``tuning`` rather than ``search`` so that the package never hides the function
``trainlab.search`` (importing a submodule ``trainlab.search.x`` would rebind that name).
"""
