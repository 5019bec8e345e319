"""POST /probe on an analyzer with a bus: the probe runs at the named site's agent, asked over
the bus (`collector.bus.probe_client`) with an operator's identity.

The analyzer's own identity asks nothing: a deployment lets its API start probes by giving
it an operator's certificate (`xnetmon analyzer --probe-operator NAME`, the all-in-one's
`lab` operator), so who may probe stays one list, the bus's operators. The agent runs the
local command with `--json` (`analyzer.api.probe_exchange`: the same options and answer as
the all-in-one's in-namespace prober). Each call runs on a thread of `analyzer.api.probe_runs`,
with its own event loop and connection (a probe is rare; a handshake is cheap beside it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats

from analyzer.api.probe_exchange import probe_answer, probe_start
from analyzer.api.probe_runs import AgentUnreachable, TargetNotAllowed, TooManyProbes
from collector.bus.connection import BusEndpoint, bus_event_loop
from collector.bus.probe_client import NoAnswer, RemoteProbe, new_request_id
from collector.bus.probe_requests import End, Line, ProbeStart, Refused


class BusProber:
    """`prober(request)` for `analyzer.api.app.create_app`: an `analyzer.api.models.ProbeRequest`
    in, the agent's probe summary out (`{"summary": {...}}`, a trace's `{"trace": {...}}`)."""

    def __init__(
        self, endpoint: BusEndpoint, *, stamp_port: int | None = None, in_thread: Callable[[], None] | None = None
    ) -> None:
        """`stamp_port`: the reflectors' port when not STAMP's own; `in_thread`: run first on the
        calling thread (the all-in-one joins the namespace where the bus is)."""
        self.endpoint = endpoint
        self.stamp_port = stamp_port
        self.in_thread = in_thread

    def __call__(self, request) -> dict:
        if self.in_thread is not None:
            self.in_thread()
        with asyncio.Runner(loop_factory=bus_event_loop) as runner:
            return runner.run(self._ask(request.agent, probe_start(request, new_request_id(), self.stamp_port)))

    async def _ask(self, site: str, start: ProbeStart) -> dict:
        errors: list[str] = []

        async def record(exc: Exception) -> None:
            errors.append(str(exc))

        options = self.endpoint.connect_options() | {"allow_reconnect": False, "error_cb": record}
        try:
            client = await nats.connect(**options)
        except Exception as exc:
            raise AgentUnreachable(f"the bus is not reachable: {exc}") from None
        printed: list[str] = []
        try:
            async with RemoteProbe(client, self.endpoint.identity, site, start, errors=errors) as probe:
                async for reply in probe.replies():
                    if isinstance(reply, Refused):
                        raise _refusal(site, reply)
                    if isinstance(reply, Line) and reply.stream == "stdout":
                        printed.append(reply.text + reply.end)
                    elif isinstance(reply, End):
                        return _answer(site, start.kind, "".join(printed).splitlines())
        except NoAnswer as exc:
            raise AgentUnreachable(f"agent {site}: {exc}") from None
        finally:
            await client.close()
        raise AgentUnreachable(f"agent {site} ended without a summary")


def _refusal(site: str, refused: Refused) -> Exception:
    reason = f"agent {site} refused: {refused.reason}"
    if refused.code == "target":
        return TargetNotAllowed(reason)
    if refused.code == "busy":
        return TooManyProbes(reason)
    if refused.code == "failed":
        return AgentUnreachable(reason)
    return ValueError(reason)


def _answer(site: str, kind: str, lines: list[str]) -> dict:
    answer = probe_answer(kind, lines)
    if answer is None:
        raise ValueError(f"agent {site}'s probe printed no summary: {lines[-1] if lines else 'nothing'}")
    return answer
