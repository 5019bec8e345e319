"""Steady business traffic per slice between two lab sites, so flows, passive RTT and in-situ
telemetry have something real to measure.

    python -m lab.business_traffic serve --bind ADDR             # in the receiving site
    python -m lab.business_traffic send --to ADDR --bind ADDR    # in the sending site

What each slice carries, shaped like what it is for (`FLOWS`):
- video: two constant-bit-rate UDP flows (100 packets/s of 1,000 octets each, a conference);
- egov: request/response over TCP (a 512-octet request answered by 4 KiB, 5 a second);
- data: a bulk TCP transfer paced to 1 Mbit/s;
- best-effort: background UDP, 20 packets/s of 200 octets.

Our own small generator rather than iperf3: one process serves every slice on its ports,
each flow carries its slice's DSCP from its socket, and egov's request/response shape is
not something iperf3 does. `send` runs until SIGTERM (or `--duration`) and prints, per
slice, what it sent (and for egov the answers it got) as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass

BASE_PORT = 5100


@dataclass(frozen=True, slots=True)
class Flow:
    slice: str
    dscp: int
    kind: str  # "udp-cbr", "tcp-request", "tcp-bulk"
    port: int
    rate: float  # packets, requests or 1,000-octet chunks per second
    size: int  # octets per packet, request or chunk


FLOWS = (
    Flow("video", 34, "udp-cbr", BASE_PORT, 100, 1000),
    Flow("video", 34, "udp-cbr", BASE_PORT + 1, 100, 1000),
    Flow("egov", 26, "tcp-request", BASE_PORT + 2, 5, 512),
    Flow("data", 18, "tcp-bulk", BASE_PORT + 3, 125, 1000),  # 1 Mbit/s
    Flow("best-effort", 0, "udp-cbr", BASE_PORT + 4, 20, 200),
)
RESPONSE = 4096


def _socket(kind: int, dscp: int, bind: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
    if bind:
        sock.bind((bind, 0))
    return sock


async def _paced(rate: float, stop: asyncio.Event):
    """Yields at `rate` per second against the clock (no drift) until `stop`."""
    start, n = time.monotonic(), 0
    while not stop.is_set():
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                pass
        yield n
        n += 1


async def _udp(flow: Flow, to: str, bind: str | None, stop: asyncio.Event, counts: dict) -> None:
    sock = _socket(socket.SOCK_DGRAM, flow.dscp, bind)
    sock.setblocking(False)
    payload = bytes(flow.size)
    try:
        async for _ in _paced(flow.rate, stop):
            try:
                sock.sendto(payload, (to, flow.port))
                counts[flow.slice]["sent"] += 1
            except OSError:
                counts[flow.slice]["errors"] += 1
    finally:
        sock.close()


async def _tcp(flow: Flow, to: str, bind: str | None, stop: asyncio.Event, counts: dict) -> None:
    while not stop.is_set():  # a connection the network broke is made again
        sock = _socket(socket.SOCK_STREAM, flow.dscp, bind)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (to, flow.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            async for _ in _paced(flow.rate, stop):
                writer.write(bytes(flow.size))
                await writer.drain()
                counts[flow.slice]["sent"] += 1
                if flow.kind == "tcp-request":
                    await reader.readexactly(RESPONSE)
                    counts[flow.slice]["answered"] += 1
            writer.close()
        except (OSError, asyncio.IncompleteReadError):
            counts[flow.slice]["errors"] += 1
            sock.close()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass


async def send(to: str, bind: str | None, duration: float | None) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    counts = {flow.slice: {"sent": 0, "answered": 0, "errors": 0} for flow in FLOWS}
    await asyncio.gather(*((_udp if flow.kind == "udp-cbr" else _tcp)(flow, to, bind, stop, counts) for flow in FLOWS))
    return counts


async def serve(bind: str, ready) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int, respond: bool) -> None:
        try:
            while True:
                await reader.readexactly(size)
                if respond:
                    writer.write(bytes(RESPONSE))
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    servers: list[asyncio.DatagramTransport | asyncio.Server] = []
    for flow in FLOWS:
        if flow.kind == "udp-cbr":
            transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(bind, flow.port))
            servers.append(transport)
        else:
            servers.append(await asyncio.start_server(functools.partial(_serve_flow, answer, flow), bind, flow.port))
    ready()
    await stop.wait()
    for server in servers:
        server.close()


async def _serve_flow(answer, flow: Flow, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(reader, writer, flow.size, flow.kind == "tcp-request")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.business_traffic", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serving = sub.add_parser("serve", help="answer every slice's flows on BIND")
    serving.add_argument("--bind", required=True)
    sending = sub.add_parser("send", help="send every slice's flows to TO")
    sending.add_argument("--to", required=True)
    sending.add_argument("--bind")
    sending.add_argument("--duration", type=float)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            asyncio.run(serve(args.bind, lambda: print("serving", flush=True)))
        else:
            print(json.dumps(asyncio.run(send(args.to, args.bind, args.duration))), flush=True)
    except OSError as exc:
        print(f"business_traffic: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
