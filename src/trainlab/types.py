"""Constrained parameter types for component factories.

A factory's keyword parameters are what a recipe may set; annotating them with these types lets
the recipe validator check each value (type and range) before anything runs, with the key named.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["Probability", "Fraction", "Positive", "NonNegative", "PositiveInt", "NonNegativeInt"]

Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]  # momentum, smoothing
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
