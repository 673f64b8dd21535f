"""Weighted random choice, the one mechanism behind provider and provider-key selection."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
_rng = random.Random()


def choose(items: Sequence[T], weight: Callable[[T], float], rng: random.Random = _rng) -> T:
    if len(items) == 1:
        return items[0]
    weights = [max(0.0, weight(i)) for i in items]
    total = sum(weights)
    if total <= 0:
        return items[0]
    point = rng.random() * total
    for item, w in zip(items, weights, strict=True):
        point -= w
        if point < 0:
            return item
    return items[-1]
