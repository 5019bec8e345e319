"""Batched datagram I/O with Linux recvmmsg(2)/sendmmsg(2), for the reflector's hot loop.

Python's socket module has no recvmmsg, and one `recvmsg` + `sendmsg` per datagram spends
more time entering the interpreter and the kernel than reflecting. `DatagramBatch` keeps
preallocated C arrays (mmsghdr, iovec, sockaddr, control buffers) and exposes each slot as
a memoryview, so a whole burst is received with one call and answered with one call.

Layouts are the x86-64/aarch64 LP64 ABI (struct msghdr is 56 octets, mmsghdr 64).
`available()` says whether this platform can use it; callers fall back to per-datagram
calls otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct

_MSGHDR = struct.Struct("@PI4xPQPQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
_MMSGHDR_SIZE = 64
_MSG_LEN_OFFSET = 56
_CONTROLLEN_OFFSET = 40
_FLAGS_OFFSET = 48
_IOVEC = struct.Struct("@PQ")
_CMSG_HEADER = struct.Struct("@Qii")  # cmsg_len, cmsg_level, cmsg_type
_U32 = struct.Struct("@I")
_U64 = struct.Struct("@Q")
_INT = struct.Struct("@i")
_SOCKADDR_SIZE = 28  # sockaddr_in6; sockaddr_in fits too
# One received mmsghdr as (msg_controllen, msg_flags, msg_len): a burst's headers in one unpack.
_RX_HEADER = struct.Struct("=40xQi4xI4x")
assert _RX_HEADER.size == _MMSGHDR_SIZE
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_AF_INET6 = int(socket.AF_INET6)
_SOURCE6 = struct.Struct("!2xH4x16s")  # sockaddr_in6: family, port, flow info, address
_SOURCE4 = struct.Struct("!2xH4s")  # sockaddr_in: family, port, address
# The same over a whole burst's names, one sockaddr slot apiece: (port, address) per datagram.
_SOURCES = {
    _AF_INET6: struct.Struct(f"!2xH4x16s{_SOCKADDR_SIZE - 24}x"),
    int(socket.AF_INET): struct.Struct(f"!2xH4s{_SOCKADDR_SIZE - 8}x"),
}
_RX_NAMELEN = struct.Struct(f"=8xI{_MMSGHDR_SIZE - 12}x")  # a received mmsghdr's msg_namelen
# A reply's mmsghdr up to its control length: name, namelen, iov, iovlen, control, controllen.
_TX_HEADER = struct.Struct("=QI4xQQQQ")


def _align(n: int) -> int:
    return (n + 7) & ~7


def available() -> bool:
    return os.uname().sysname == "Linux" and struct.calcsize("P") == 8 and _MSGHDR.size == 56 and _libc() is not None


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL | None:
    global _LIBC
    if _LIBC is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
            libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
            _LIBC = libc
        except (OSError, AttributeError):
            return None
    return _LIBC


class DatagramBatch:
    """Up to `capacity` datagrams of up to `size` octets, received and answered in bulk."""

    def __init__(self, capacity: int = 32, size: int = 9216, control: int = 256) -> None:
        libc = _libc()
        if libc is None:
            raise OSError("recvmmsg/sendmmsg are not available")
        self._recvmmsg = libc.recvmmsg
        self._sendmmsg = libc.sendmmsg
        self.capacity, self.size, self.control_size = capacity, size, control
        self._data = ctypes.create_string_buffer(capacity * size)
        self._names = ctypes.create_string_buffer(capacity * _SOCKADDR_SIZE)
        self._rx_control = ctypes.create_string_buffer(capacity * control)
        self._tx_control = ctypes.create_string_buffer(capacity * control)
        self._rx_iov = ctypes.create_string_buffer(capacity * _IOVEC.size)
        self._tx_iov = ctypes.create_string_buffer(capacity * _IOVEC.size)
        self._rx = ctypes.create_string_buffer(capacity * _MMSGHDR_SIZE)
        self._tx = ctypes.create_string_buffer(capacity * _MMSGHDR_SIZE)
        data, names = ctypes.addressof(self._data), ctypes.addressof(self._names)
        rx_control, rx_iov = ctypes.addressof(self._rx_control), ctypes.addressof(self._rx_iov)
        tx_control, tx_iov = ctypes.addressof(self._tx_control), ctypes.addressof(self._tx_iov)
        for i in range(capacity):
            _IOVEC.pack_into(self._rx_iov, i * _IOVEC.size, data + i * size, size)
            _IOVEC.pack_into(self._tx_iov, i * _IOVEC.size, data + i * size, 0)
            _MSGHDR.pack_into(
                self._rx,
                i * _MMSGHDR_SIZE,
                names + i * _SOCKADDR_SIZE,
                _SOCKADDR_SIZE,
                rx_iov + i * _IOVEC.size,
                1,
                rx_control + i * control,
                control,
                0,
            )
            _MSGHDR.pack_into(
                self._tx,
                i * _MMSGHDR_SIZE,
                names + i * _SOCKADDR_SIZE,
                _SOCKADDR_SIZE,
                tx_iov + i * _IOVEC.size,
                1,
                tx_control + i * control,
                0,
                0,
            )
        # recvmmsg overwrites namelen/controllen/flags: restore all slots with one copy.
        self._rx_template = bytes(self._rx)
        self._rx_view = memoryview(self._rx).cast("B")
        self._tx_view = memoryview(self._tx).cast("B")
        self._tx_iov_view = memoryview(self._tx_iov).cast("B")
        self._tx_control_view = memoryview(self._tx_control).cast("B")
        self._rx_control_view = memoryview(self._rx_control).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        data_view = memoryview(self._data).cast("B")
        self.slots = [data_view[i * size : (i + 1) * size] for i in range(capacity)]
        self._rx_addr = ctypes.addressof(self._rx)
        self._tx_addr = ctypes.addressof(self._tx)
        self._names_addr = names
        self._data_addr = data
        self._tx_iov_addr = tx_iov
        self._tx_control_addr = tx_control
        self._pending = 0  # replies queued for the next send()
        # Addresses by slot and by reply, and what each reply's header, iovec and control area
        # were last laid out for: a burst like the one before (the same slots, lengths and
        # ancillary data, as a steady stream gives) rewrites none of them.
        self._name_addresses = [names + i * _SOCKADDR_SIZE for i in range(capacity)]
        self._data_addresses = [data + i * size for i in range(capacity)]
        self._tx_iov_addresses = [tx_iov + n * _IOVEC.size for n in range(capacity)]
        self._tx_laid_out: list[tuple[int, int, bytes] | None] = [None] * capacity
        self._tx_namelen = [0] * capacity

    # -- receiving -----------------------------------------------------------------------

    def receive(self, fd: int) -> int:
        """Receive what is waiting, without blocking; the number of datagrams (0 if none)."""
        self._rx_view[:] = self._rx_template
        count = self._recvmmsg(fd, self._rx_addr, self.capacity, _MSG_DONTWAIT, None)
        if count < 0:
            err = ctypes.get_errno()
            if err in (11, 4):  # EAGAIN, EINTR
                return 0
            raise OSError(err, os.strerror(err))
        return count

    def headers(self, count: int) -> list[tuple[int, int, int]]:
        """(control length, flags, length) of the first `count` datagrams received, read at once:
        cheaper per datagram than `length`, `flags` and the control data's length one by one."""
        return list(_RX_HEADER.iter_unpack(self._rx_view[: count * _MMSGHDR_SIZE]))

    @property
    def control_area(self) -> memoryview:
        """The raw control data of every slot: slot i's starts at i * control_size."""
        return self._rx_control_view

    def length(self, i: int) -> int:
        return _U32.unpack_from(self._rx_view, i * _MMSGHDR_SIZE + _MSG_LEN_OFFSET)[0]

    def flags(self, i: int) -> int:
        return _INT.unpack_from(self._rx_view, i * _MMSGHDR_SIZE + _FLAGS_OFFSET)[0]

    def source(self, i: int) -> tuple[int, bytes, int]:
        """(family, packed address, port) of datagram i's sender."""
        base = i * _SOCKADDR_SIZE
        names = self._names_view
        family = names[base] | names[base + 1] << 8
        if family == _AF_INET6:
            port, address = _SOURCE6.unpack_from(names, base)
        else:
            port, address = _SOURCE4.unpack_from(names, base)
        return family, address, port

    def sources(self, count: int, family: int) -> list[tuple[int, bytes]]:
        """(port, packed address) of the first `count` senders, read at once: for a socket of
        `family` (an IPv6 socket bound V6ONLY, as the reflector's are, hears only IPv6)."""
        return list(_SOURCES[family].iter_unpack(self._names_view[: count * _SOCKADDR_SIZE]))

    def address(self, i: int) -> memoryview:
        """Datagram i's sender as the raw sockaddr (of whatever family the socket has)."""
        return self._names_view[i * _SOCKADDR_SIZE : (i + 1) * _SOCKADDR_SIZE]

    def control(self, i: int) -> list[tuple[int, int, memoryview]]:
        """Datagram i's ancillary items as (level, type, data), like socket.recvmsg gives."""
        controllen = _U64.unpack_from(self._rx_view, i * _MMSGHDR_SIZE + _CONTROLLEN_OFFSET)[0]
        base = i * self.control_size
        view = self._rx_control_view
        items = []
        offset = 0
        while offset + _CMSG_HEADER.size <= controllen:
            cmsg_len, level, kind = _CMSG_HEADER.unpack_from(view, base + offset)
            if cmsg_len < _CMSG_HEADER.size:
                break
            start = base + offset + _CMSG_HEADER.size
            items.append((level, kind, view[start : base + offset + cmsg_len]))
            offset += _align(cmsg_len)
        return items

    # -- answering -----------------------------------------------------------------------

    def queue_reply(self, i: int, length: int, cmsgs: list[tuple[int, int, bytes]]) -> None:
        """Send slot i's first `length` octets back to its sender at the next `send()`."""
        self.queue_packed_reply(i, length, pack_control(cmsgs))

    def queue_packed_reply(self, i: int, length: int, control: bytes) -> None:
        """`queue_reply` with the ancillary data packed already (`pack_control`), as a caller
        that sends the same few kinds of reply over and over can keep it."""
        self.queue_packed_replies([(i, length, control)])

    def queue_packed_replies(self, replies: list[tuple[int, int, bytes]]) -> None:
        """`queue_packed_reply` for each (slot, length, packed control) in turn."""
        first = self._pending
        if first + len(replies) > self.capacity:
            raise ValueError(f"{first + len(replies)} replies queued, room for {self.capacity}")
        namelens = [value for (value,) in _RX_NAMELEN.iter_unpack(self._rx_view[: self.capacity * _MMSGHDR_SIZE])]
        laid_out, laid_namelen = self._tx_laid_out, self._tx_namelen
        n = first
        for reply in replies:
            i = reply[0]
            if laid_out[n] != reply or laid_namelen[n] != namelens[i]:
                self._lay_out(n, reply, namelens[i])
            n += 1
        self._pending = n

    def _lay_out(self, n: int, reply: tuple[int, int, bytes], namelen: int) -> None:
        """Reply n: slot i's sender address, its first `length` octets, the control data copied to
        reply n's area."""
        i, length, control = reply
        control_length = len(control)
        if control_length > self.control_size:
            raise ValueError(f"{control_length} octets of ancillary data, room for {self.control_size}")
        self._tx_laid_out[n] = None  # until all of it is written
        control_base = n * self.control_size
        self._tx_control_view[control_base : control_base + control_length] = control
        _TX_HEADER.pack_into(
            self._tx_view,
            n * _MMSGHDR_SIZE,
            self._name_addresses[i],
            namelen,
            self._tx_iov_addresses[n],
            1,
            self._tx_control_addr + control_base,
            control_length,
        )
        _IOVEC.pack_into(self._tx_iov_view, n * _IOVEC.size, self._data_addresses[i], length)
        self._tx_laid_out[n], self._tx_namelen[n] = reply, namelen

    def send(self, fd: int) -> tuple[int, int]:
        """Send the queued replies and clear the queue; returns (sent, failed)."""
        pending, self._pending = self._pending, 0
        index = sent = failed = 0
        while index < pending:
            count = self._sendmmsg(fd, self._tx_addr + index * _MMSGHDR_SIZE, pending - index, 0)
            if count > 0:
                sent += count
                index += count
            else:  # the datagram at `index` could not go (e.g. no route back): skip it
                failed += 1
                index += 1
        return sent, failed


def pack_control(cmsgs: list[tuple[int, int, bytes]]) -> bytes:
    """Ancillary items (level, type, data) laid out as a msg_control buffer."""
    out = bytearray()
    for level, kind, data in cmsgs:
        cmsg_len = _CMSG_HEADER.size + len(data)
        out += _CMSG_HEADER.pack(cmsg_len, level, kind) + bytes(data)
        out += bytes(_align(cmsg_len) - cmsg_len)
    return bytes(out)
