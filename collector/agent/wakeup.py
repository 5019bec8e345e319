"""A one-shot timer the event loop watches as a file descriptor (Linux timerfd).

asyncio's own timers wait in epoll, whose timeout is whole milliseconds: a timer due in
0.1 ms fires up to 1 ms late, which is the scheduling lag a probe then shows. A timerfd
becomes readable within microseconds of its time (the kernel's high-resolution timers),
so the loop wakes when it was asked to.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_timerfd_create = _libc.timerfd_create
_timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
_timerfd_settime = _libc.timerfd_settime
_timerfd_settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p)


def _raise_errno(what: str) -> None:
    errno = ctypes.get_errno()
    raise OSError(errno, f"{what}: {os.strerror(errno)}")


class WakeupTimer:
    """Readable once `arm(delay_ns)` has elapsed, until it is armed again: arming replaces the
    previous time and clears an expiry not yet read. Relative to the monotonic clock, so a
    wall-clock step moves nothing."""

    def __init__(self) -> None:
        fd = _timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            _raise_errno("timerfd_create")
        self._fd = fd
        self._spec = _Itimerspec()  # reused: arming allocates nothing
        self._spec_ref = ctypes.byref(self._spec)

    def fileno(self) -> int:
        return self._fd

    def arm(self, delay_ns: int) -> None:
        """Readable `delay_ns` from now (at once if not positive)."""
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(max(1, delay_ns), 1_000_000_000)  # 0 would disarm
        if _timerfd_settime(self._fd, 0, self._spec_ref, None) != 0:
            _raise_errno("timerfd_settime")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> WakeupTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
