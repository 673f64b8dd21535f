"""The engine: one inference call from an authenticated request to a metered, settled answer.
The sequence is in `run`; each module below does one job of it."""

from sluice.engine.cost import first_output_block
from sluice.engine.run import Engine
from sluice.engine.shapes import Inbound, Outcome

__all__ = ["Engine", "Inbound", "Outcome", "first_output_block"]
