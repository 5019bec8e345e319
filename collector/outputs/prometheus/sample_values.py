"""Sample values as prometheus_client writes them (`floatToGoString`): one at a time, or
every count of a scrape in bulk.

Below 1e6 Go's format is Python's repr of the float (`7.0`, `0.004321`); from 1e6 on Go
writes an exponent (`2.50001e+06`) where Python writes `2500010.0`. An agent's counters pass
1e6 after ~12 days at one probe a second, and a scrape of 40,000 paths then holds some
600,000 such counts: `count_texts` writes the distinct ones with two %-formats and a few
bytes replaces instead of a Python call each.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import chain

from prometheus_client.utils import floatToGoString

EXPONENT_FROM = 1_000_000  # Go writes values from here on with an exponent
_EXACT_BELOW = 2**53  # ints below this are floats exactly, so their digits are repr's


def number(value: int | float) -> str:
    """A sample value as prometheus_client writes it (`floatToGoString`), with shortcuts for
    the common cases: below 1e6 Go's format is Python's repr of the float."""
    if type(value) is int:
        if 0 <= value < EXPONENT_FROM:
            return f"{value}.0"
    elif type(value) is float and -EXPONENT_FROM < value < EXPONENT_FROM:  # finite: no inf, no NaN
        return repr(value)
    return floatToGoString(value)


def count_texts(counts: Iterable[int]) -> dict[int, bytes]:
    """`number` of each distinct count, UTF-8."""
    distinct = sorted(set(counts))
    low, middle, high = (bisect_left(distinct, bound) for bound in (0, EXPONENT_FROM, _EXACT_BELOW))
    texts = chain(
        map(_one, distinct[:low]),  # below 0: no count, but written as number writes it all the same
        _lines(b"%d.0\n", distinct[low:middle]),
        _exponent_form(distinct[middle:high]),
        map(_one, distinct[high:]),
    )
    return dict(zip(distinct, texts))


def value_texts(values: Iterable[int | float]) -> tuple[bytes, ...]:
    """`number` of each value, UTF-8, one by one: each distinct value written once."""
    return tuple(map(cache(_one), values))


def _one(value: int | float) -> bytes:
    return number(value).encode()


def _lines(line: bytes, values: Sequence[int]) -> list[bytes]:
    return ((line * len(values)) % tuple(values)).split(b"\n")[:-1]


def _exponent_form(counts: Sequence[int]) -> list[bytes]:
    """Counts from 1e6 to 2**53 as Go writes them: `%.15e` writes their digits exactly (16
    at most) and the exponent as Go does (`e+06`); the mantissa's trailing zeros (up to 15,
    in runs of 8, 4, 2 and 1), then a point left bare, are taken off."""
    text = (b"%.15e\n" * len(counts)) % tuple(map(float, counts))  # exact: below 2**53; floats format faster
    for zeros in (b"00000000e", b"0000e", b"00e", b"0e"):
        text = text.replace(zeros, b"e")
    return text.replace(b".e", b"e").split(b"\n")[:-1]
