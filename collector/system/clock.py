"""How good is this host's clock? The answer goes into every STAMP Error Estimate.

Reads the kernel's NTP state with adjtimex(2) (mode 0: read only): the STA_UNSYNC flag
says whether a time daemon disciplines the clock, `esterror` its estimated error.
One-way delays are only trusted when both ends say S=1 and their errors are small.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from dataclasses import dataclass

from collector.wire.stamp import ErrorEstimate, TimestampFormat
from collector.wire.stamp_tlv import SyncSource

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_TIMEX_SIZE = 512  # larger than struct timex on every Linux ABI
# struct timex on LP64: unsigned modes (+pad), long offset, freq, maxerror, esterror, int status
_TIMEX_HEAD = struct.Struct("@I4xqqqqi")
UNSYNCHRONISED_ERROR_S = 1.0  # what a free-running clock admits to


@dataclass(frozen=True, slots=True)
class ClockStatus:
    synchronized: bool
    error_s: float  # estimated error of this clock against UTC, seconds
    sync_source: int  # SyncSource code point for the Timestamp Information TLV

    def error_estimate(self, timestamp_format: TimestampFormat = TimestampFormat.NTP) -> ErrorEstimate:
        return ErrorEstimate.from_seconds(
            self.error_s, synchronized=self.synchronized, timestamp_format=timestamp_format
        )


def read_clock_status() -> ClockStatus:
    """The kernel's view of the clock; unsynchronised when it cannot be read."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(_TIMEX_SIZE)
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return unsynchronised()
    _modes, _offset, _freq, _maxerror, esterror_us, status = _TIMEX_HEAD.unpack_from(buf.raw)
    if state < 0 or state == _TIME_ERROR or status & _STA_UNSYNC:
        return unsynchronised()
    return ClockStatus(True, max(esterror_us, 1) / 1e6, SyncSource.NTP)


def unsynchronised() -> ClockStatus:
    return ClockStatus(False, UNSYNCHRONISED_ERROR_S, SyncSource.LOCAL_FREE_RUNNING)


def shared_host_clock(error_s: float = 1e-6) -> ClockStatus:
    """Both ends read the same kernel clock (loopback, or namespaces of one lab host):
    synchronised by construction, to within software timestamping error."""
    return ClockStatus(True, error_s, SyncSource.LOCAL_FREE_RUNNING)
