"""The asking side of on-demand probes (`collector.bus.probe_requests`): one request sent to
a site's agent, its replies read as they come, a cancel when the asker stops. Used by
`xnetmon probe ... --from SITE` and by the analyzer's POST /probe."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

from collector.bus.probe_requests import (
    Accepted,
    BadProbeMessage,
    End,
    Line,
    Lines,
    ProbeCancel,
    ProbeStart,
    Refused,
    decode_reply,
    encode_control,
    reply_subject,
    request_subject,
)

FIRST_REPLY_TIMEOUT_S = 15.0  # an agent answers accepted or refused at once
IDLE_TIMEOUT_S = 300.0  # between two lines of a running probe (a trace prints at its end)
MAX_PENDING_REPLIES = 10_000  # replies held for a slow reader


class NoAnswer(Exception):
    """No agent answered the request (none listens on the site's subject, or the bus refused
    the asker: `errors` holds what the server said)."""


def new_request_id() -> str:
    return secrets.token_hex(16)


ShownReply = Accepted | Refused | Line | End


class RemoteProbe:
    """`async with RemoteProbe(client, identity, site, request) as probe:` sends the request;
    `probe.replies()` yields every reply up to the last (`End` or `Refused`), each printed
    line of a `Lines` batch on its own, in order."""

    def __init__(
        self,
        client,
        identity: str,
        site: str,
        request: ProbeStart,
        *,
        errors: list[str] | None = None,
        first_reply_timeout_s: float = FIRST_REPLY_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.site = site
        self.request = request
        self.subject = request_subject(site)
        self.reply = reply_subject(identity, request.id)
        self.errors = errors if errors is not None else []
        self.first_reply_timeout_s = first_reply_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.accepted = False
        self.ended = False
        self._subscription = None

    async def __aenter__(self) -> RemoteProbe:
        self._subscription = await self.client.subscribe(self.reply, pending_msgs_limit=MAX_PENDING_REPLIES)
        await self.client.flush()  # subscribed before the agent can answer
        await self.client.publish(self.subject, encode_control(self.request), reply=self.reply)
        await self.client.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.accepted and not self.ended:
            await self.cancel()
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    async def cancel(self) -> None:
        """Stop the probe at the agent: it prints its summary and ends, like Ctrl-C."""
        # With the request's reply subject: the agent takes a cancel only from the requester.
        await self.client.publish(self.subject, encode_control(ProbeCancel(id=self.request.id)), reply=self.reply)
        await self.client.flush()

    async def replies(self) -> AsyncIterator[ShownReply]:
        assert self._subscription is not None, "use RemoteProbe in `async with`"
        while not self.ended:
            timeout = self.idle_timeout_s if self.accepted else self.first_reply_timeout_s
            try:
                message = await self._subscription.next_msg(timeout=timeout)
            except TimeoutError:
                raise NoAnswer(self._silence(timeout)) from None
            try:
                reply = decode_reply(message.data)
            except BadProbeMessage:
                continue  # not an agent's reply: nothing to show
            if isinstance(reply, Lines):
                for line in reply.lines:
                    yield line
                continue
            if isinstance(reply, Accepted):
                self.accepted = True
            self.ended = isinstance(reply, End | Refused)
            yield reply

    def _silence(self, timeout: float) -> str:
        what = "the running probe went silent" if self.accepted else "no agent answered"
        said = f"; the bus said: {self.errors[-1]}" if self.errors else ""
        return f"{what} on {self.subject} within {timeout:g} s{said}"
