"""A child's output pipe read without blocking: whole lines as they complete, a long line in
parts of at most MAX_LINE_CHARS, the last line without its newline at the end, and a bound
on what one read takes."""

from __future__ import annotations

import fcntl
import os

from collector.agent.probe_output import MAX_READ_BYTES, OutputPipe
from collector.bus.probe_requests import MAX_LINE_CHARS, Line


def pipe(stream="stdout") -> tuple[OutputPipe, int]:
    read_end, write_end = os.pipe()
    return OutputPipe(read_end, stream), write_end


def test_whole_lines_as_they_complete_and_the_last_at_the_end():
    output, child = pipe("stderr")
    assert output.read() == [] and not output.ended  # nothing printed yet: no wait
    os.write(child, b"PING ::1\n64 bytes")
    assert output.read() == [Line("PING ::1", "stderr")]
    os.write(child, b" from ::1\n\n--- ::1 ping statistics")
    assert output.read() == [Line("64 bytes from ::1", "stderr"), Line("", "stderr")]
    os.close(child)
    assert output.read() == [Line("--- ::1 ping statistics", "stderr")]
    assert output.ended and output.read() == []
    output.close()  # again: nothing to close


def test_a_long_line_goes_in_parts_whether_or_not_its_end_has_come():
    output, child = pipe()
    os.write(child, b"a" * (MAX_LINE_CHARS + 10))  # its newline not yet printed
    assert output.read() == [Line("a" * MAX_LINE_CHARS, more=True)]
    os.write(child, b"b" * (MAX_LINE_CHARS + 1) + b"\nc\n")
    assert output.read() == [
        Line("a" * 10 + "b" * (MAX_LINE_CHARS - 10), more=True),
        Line("b" * 11),
        Line("c"),
    ]
    os.close(child)
    assert output.read() == [] and output.ended


def test_one_read_takes_at_most_its_bound_and_leaves_the_rest_in_the_pipe():
    output, child = pipe()
    fcntl.fcntl(child, fcntl.F_SETPIPE_SZ, 4 * MAX_READ_BYTES)
    line = b"x" * 1023 + b"\n"
    for _ in range(4 * MAX_READ_BYTES // len(line)):
        os.write(child, line)
    os.close(child)
    reads = []
    while not output.ended:
        reads.append(output.read())
    assert [len(lines) for lines in reads] == [MAX_READ_BYTES // len(line)] * 4 + [0]
    assert all(taken == Line("x" * 1023) for lines in reads for taken in lines)
