"""Constrained parameter types for component factories.

A factory's keyword parameters are what a recipe may set; annotating them with these types lets
the recipe validator check each value (type and range) before anything runs, with the key named.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "Probability",
    "Fraction",
    "Positive",
    "NonNegative",
    "PositiveInt",
    "NonNegativeInt",
    "Finite",
    "PositiveRange",
    "UnitRange",
]

Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]  # momentum, smoothing
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Finite = Annotated[float, Field(allow_inf_nan=False)]  # a fill value: any finite number


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise PydanticCustomError(
            "range_order", "a (low, high) range needs low <= high, got {pair}", {"pair": list(pair)}
        )
    return pair


# (low, high) pairs with low <= high (YAML lists [low, high]): augmentation parameter ranges
PositiveRange = Annotated[tuple[Positive, Positive], AfterValidator(_ordered)]
UnitRange = Annotated[tuple[Probability, Probability], AfterValidator(_ordered)]  # in [0, 1]
