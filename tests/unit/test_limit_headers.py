"""The budget headers' dollar amounts, now in integer arithmetic, print exactly what the Decimal
formula printed (four decimals, rounded half to even), on the edges of every rounding case."""

from __future__ import annotations

import random
from decimal import Decimal

from sluice.governance.limits import dollars_4dp
from sluice.pricing.rates import pico_to_dollars


def _decimal(pico: int) -> str:
    return f"{pico_to_dollars(pico).quantize(Decimal('0.0001'))}"


def test_dollars_4dp_matches_the_decimal_formula() -> None:
    rng = random.Random(14)
    cases = [0, 1, 10**8 - 1, 10**8, 5 * 10**7, 15 * 10**7, 25 * 10**7, 5 * 10**7 + 1, 10**12, 10**18 + 5 * 10**7]
    cases += [rng.randrange(0, 10**19) for _ in range(5000)]
    cases += [rng.randrange(0, 10**6) * 10**8 + 5 * 10**7 for _ in range(1000)]  # exact halves
    for pico in cases:
        assert dollars_4dp(pico) == _decimal(pico), pico
