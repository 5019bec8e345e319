"""The asking side on a real nats-server: replies come in order up to the last, what is not
a reply is skipped, silence is NoAnswer, and a site's credentials cannot ask at all."""

from __future__ import annotations

import asyncio

import nats
import pytest

from collector.bus.connection import operator_identity
from collector.bus.probe_client import NoAnswer, RemoteProbe, new_request_id
from collector.bus.probe_requests import (
    Accepted,
    End,
    Line,
    Lines,
    ProbeStart,
    decode_control,
    encode_reply,
    request_subject,
)
from tests.bus_support import connect_options, running_bus
from xnetmon import bus_setup

pytestmark = pytest.mark.tool("nats-server")


def request() -> ProbeStart:
    return ProbeStart(id=new_request_id(), kind="icmp", target="::1", count=1)


def test_replies_come_in_order_up_to_the_end_and_strangers_are_skipped(tmp_path):
    async def main(pki, server) -> tuple[list, list]:
        site = await nats.connect(**connect_options(bus_setup.site_endpoint(pki, "cnty1a", (server.url,))))
        operator = await nats.connect(**connect_options(bus_setup.operator_endpoint(pki, "noc", (server.url,))))
        seen = []

        async def answer(message) -> None:
            seen.append(decode_control(message.data))
            for reply in (
                b"not json",
                encode_reply(Accepted("cnty1a")),
                encode_reply(Lines((Line("one"), Line("two", "stderr")))),
                encode_reply(End(0)),
            ):
                await site.publish(message.reply, reply)

        await site.subscribe(request_subject("cnty1a"), cb=answer)
        await site.flush()
        try:
            async with RemoteProbe(operator, operator_identity("noc"), "cnty1a", request()) as probe:
                return [r async for r in probe.replies()], seen
        finally:
            await site.close()
            await operator.close()

    with running_bus(tmp_path, operators=("noc",)) as (pki, server):
        replies, seen = asyncio.run(main(pki, server))
    assert replies == [Accepted("cnty1a"), Line("one"), Line("two", "stderr"), End(0)]
    assert len(seen) == 1 and seen[0].target == "::1"


def test_silence_is_no_answer_and_a_site_cannot_ask(tmp_path):
    async def main(pki, server, endpoint) -> str:
        errors: list[str] = []
        client = await nats.connect(**connect_options(endpoint, errors))
        try:
            async with RemoteProbe(
                client, endpoint.identity, "cnty2b", request(), errors=errors, first_reply_timeout_s=1.0
            ) as probe:
                with pytest.raises(NoAnswer) as caught:
                    [r async for r in probe.replies()]
            return str(caught.value)
        finally:
            await client.close()

    with running_bus(tmp_path, operators=("noc",)) as (pki, server):
        nobody = asyncio.run(main(pki, server, bus_setup.operator_endpoint(pki, "noc", (server.url,))))
        site = asyncio.run(main(pki, server, bus_setup.site_endpoint(pki, "cnty1a", (server.url,))))
    assert nobody.startswith("no agent answered on xnetprobe.cnty2b within 1 s")
    assert 'permissions violation for publish to "xnetprobe.cnty2b"' in site.lower()
