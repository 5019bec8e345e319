#!/usr/bin/env python3
"""The floor for reflector throughput: the smallest useful Python UDP echo loop.

One blocking socket, `recvfrom` then `sendto` the same bytes back, nothing else: no
parsing, no timestamps, no ancillary data. Whatever a real reflector does costs time on
top of this loop, so its packets/s relative to this one says how lean it is.

    .venv/bin/python bench/echo_floor.py --bind ::1 --port 8621

Prints "listening" once bound; SIGTERM or Ctrl-C prints the packet count and exits.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description="plain-socket UDP echo loop")
    parser.add_argument("--bind", default="::1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: several loops share the port")
    args = parser.parse_args()
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # as the reflector does
    if args.reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((args.bind, args.port))
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"echo floor listening on [{args.bind}]:{args.port}", flush=True)
    recvfrom, sendto = sock.recvfrom, sock.sendto
    count = 0
    try:
        while True:
            data, address = recvfrom(9216)
            sendto(data, address)
            count += 1
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        print(f"{count} echoed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
