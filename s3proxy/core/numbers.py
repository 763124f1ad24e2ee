"""The one parser of decimal numbers that arrive from outside (headers, query parameters, XML,
upstream responses). Pure.

``int()`` is not that parser: it takes other scripts' digits (``"٣"``), signs, spaces and
underscores (``" +1_0 "``), and ``str.isdigit()`` passes characters ``int()`` then refuses
(``"²"``), which turned odd input into bare 500s. Here a number is 1 to ``max_digits`` ASCII
digits, nothing else, optionally within bounds; anything else is ``None`` for the caller to
answer with its own S3 error.
"""

from __future__ import annotations

# Enough for any size, offset or count S3 has (5 TiB objects, 10,000 parts), and far below
# anything whose conversion costs time.
MAX_DIGITS = 19


def parse_decimal(
    text: str | bytes | None,
    *,
    low: int | None = None,
    high: int | None = None,
    max_digits: int = MAX_DIGITS,
) -> int | None:
    """The non-negative integer ``text`` spells in ASCII digits, or ``None`` when it is not
    one (empty, too long, any other character) or lies outside ``low`` .. ``high``."""
    if text is None or not 0 < len(text) <= max_digits:
        return None
    if isinstance(text, bytes):
        if not text.isdigit():  # bytes.isdigit() is ASCII-only
            return None
    elif not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    if (low is not None and value < low) or (high is not None and value > high):
        return None
    return value
