"""What an on-demand probe's child prints, read from its pipe without blocking and without a
wake-up per line: the agent reads every running probe's pipes together, once a tick
(`collector.bus.probe_requests.LINES_EVERY_S`), and sends what each printed as one batch.
A line is whole when its newline has come; one longer than MAX_LINE_CHARS goes in parts
(`Line.more`), so a reader never holds more than that of one line.
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

from collector.bus.probe_requests import MAX_LINE_CHARS, Line

MAX_READ_BYTES = 1 << 18  # per pipe and tick: the rest waits in the pipe (and the child with it)
READ_BYTES = 65536


class OutputPipe:
    """The read end of one of a child's output pipes (made non-blocking here; closed at its
    end). `read()` gives the lines printed since the last call; `ended` once the child
    closed its end and the last line went out."""

    def __init__(self, fd: int, stream: Literal["stdout", "stderr"]) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.stream = stream
        self.ended = False
        self._pending = b""

    def read(self) -> list[Line]:
        lines: list[Line] = []
        taken = 0
        while not self.ended and taken < MAX_READ_BYTES:
            try:
                chunk = os.read(self.fd, min(READ_BYTES, MAX_READ_BYTES - taken))
            except BlockingIOError:
                break
            if not chunk:
                self._end(lines)
                break
            taken += len(chunk)
            *whole, self._pending = (self._pending + chunk).split(b"\n")
            for line in whole:
                lines.append(self._line(self._parts(line, lines)))
            self._pending = self._parts(self._pending, lines)
        return lines

    def close(self) -> None:
        if not self.ended:
            self.ended = True
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def _end(self, lines: list[Line]) -> None:
        if self._pending:  # the last line had no newline
            lines.append(self._line(self._pending))
            self._pending = b""
        self.close()

    def _parts(self, line: bytes, lines: list[Line]) -> bytes:
        """Append MAX_LINE_CHARS parts of `line` while more than that is left; the rest."""
        while len(line) > MAX_LINE_CHARS:
            lines.append(self._line(line[:MAX_LINE_CHARS], more=True))
            line = line[MAX_LINE_CHARS:]
        return line

    def _line(self, text: bytes, more: bool = False) -> Line:
        return Line(text.decode(errors="replace"), self.stream, more)
