"""Exact cost of a request: the bundled, versioned price data (genai-prices' snapshot plus
Sluice's supplement), config overrides on top, integer pico-dollar costs (see `rates`)."""
