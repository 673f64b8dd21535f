"""The 431 test on every request's headers (sluice.http.asgi.oversized_headers)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.http.asgi import oversized_headers

_header = st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=120))


def _by_loop(headers: list[tuple[bytes, bytes]], total_limit: int, line_limit: int) -> str | None:
    """The test as a plain loop (how it read before): the longest line, then the sum."""
    longest = total = 0
    for name, value in headers:
        size = len(name) + len(value)
        total += size
        longest = max(longest, size)
    if longest + 4 > line_limit:
        name = next(n for n, v in headers if len(n) + len(v) == longest)
        return f"The request header '{name[:64].decode('latin-1')}' is larger than {line_limit} bytes."
    if total + 4 * len(headers) > total_limit:
        return f"The request headers are larger than {total_limit} bytes in all."
    return None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(_header, max_size=12), st.integers(0, 800), st.integers(4, 200))
def test_refuses_exactly_what_the_limits_say(headers: list[tuple[bytes, bytes]], total: int, line: int) -> None:
    assert oversized_headers({"headers": headers}, total, line) == _by_loop(headers, total, line)
