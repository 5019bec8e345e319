"""On-demand probes over the bus: the subjects, the request and reply messages, and the
command line a request stands for.

Core NATS request/reply, not JetStream: a probe is live (an engineer watches it), so a
request nobody answers now is worth nothing later, and nothing is stored.

- An operator publishes a `ProbeStart` on `xnetprobe.SITE` (`request_subject`) with a reply
  subject `_XNET_PROBE.IDENTITY.ID` (`reply_subject`), and subscribes to it first. Only
  operator identities may publish there; each site's agent subscribes to its own subject
  only. The root is not `xnet.`: the windows' stream (and its partition mapping) takes
  `xnet.*.*` and `xnet.*.*.*`, and a probe must never be stored.
- The agent answers on the reply subject, in order: `accepted` or `refused` (with its
  reason; nothing follows), then `lines`: batches of the lines the probe command prints
  (stdout or stderr, in the order each stream printed them), one batch per stream read,
  at most every `LINES_EVERY_S`, then `end` with the command's exit status. The summary is
  the last lines, exactly as the local command prints them. A batch, not a message per
  line: a probe printing 33 lines a second, ten at once, would otherwise cost the agent a
  publish (and its socket write) per line, time its scheduled probing shares.
- A `ProbeCancel` with the same id and reply subject on the same request subject stops the probe as Ctrl-C
  stops the local command: its summary lines and `end` still come.

The reply subject's second token names the requester: a client may subscribe only under its
own identity there, so whoever reads the replies is who the agent logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from collector.bus.subjects import SITE_PATTERN, check_site

REQUEST_ROOT = "xnetprobe"
REPLY_ROOT = "_XNET_PROBE"
REQUEST_SUBJECTS = f"{REQUEST_ROOT}.*"  # what an operator may publish to
MAX_REQUEST_BYTES = 4096
MAX_LINE_CHARS = 32768  # a longer printed line (a trace's --json) goes in parts: `Line.more`
MAX_BATCH_CHARS = 65536  # the text of one `lines` reply (a single part may be up to MAX_LINE_CHARS)
MAX_BATCH_LINES = 1000
LINES_EVERY_S = 0.1  # how long a printed line may wait at the agent for others to join its batch
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
PROBE_KINDS = ("icmp", "trace", "stamp")

# The request's fields that stand for the local command's options, by kind: each field is the
# option's argparse destination (so the command line turns its parsed options into a request
# by name), with its flag and, for switches, None as the value it takes.
OPTION_FLAGS: dict[str, str] = {
    "slice": "--slice",
    "dscp": "--dscp",
    "flow_label": "--flow-label",
    "count": "-c",
    "interval": "-i",
    "timeout": "-W",
    "size": "-s",
    "port": "-p",
    "proto": "--proto",
    "flows": "--flows",
    "queries": "-q",
    "first_hop": "-f",
    "max_hops": "-m",
    "sim_queries": "-N",
    "ssid": "--ssid",
    "timestamp_format": "--timestamp-format",
    "multipath": "--multipath",
    "report": "--report",
    "json_output": "--json",
}
SWITCHES = frozenset({"multipath", "report", "json_output"})
ARGPARSE_DEST = {"json_output": "json"}  # a field whose name is not its option's destination
COMMON_OPTIONS = ("slice", "dscp", "flow_label", "count", "interval", "timeout", "json_output")
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "icmp": (*COMMON_OPTIONS, "size"),
    "stamp": (*COMMON_OPTIONS, "size", "port", "ssid", "timestamp_format"),
    "trace": (*COMMON_OPTIONS, "port", "proto", "flows", "queries", "first_hop", "max_hops", "sim_queries")
    + ("multipath", "report"),
}
TARGET_PATTERN = re.compile(r"^[A-Za-z0-9:][A-Za-z0-9.:_%-]{0,252}$")  # an address or a DNS name, never an option


class BadProbeMessage(ValueError):
    """A probe message that is not one of the schemas: refused with this reason."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeStart(_Message):
    """Run `xnetmon probe KIND TARGET [options]` at the site; None leaves the command's default."""

    op: Literal["start"] = "start"
    id: Annotated[str, Field(pattern=ID_PATTERN.pattern)]
    kind: Literal["icmp", "trace", "stamp"]
    target: Annotated[str, Field(pattern=TARGET_PATTERN.pattern)]
    slice: Annotated[str, Field(pattern=f"^{SITE_PATTERN.pattern}$")] | None = None
    dscp: Annotated[int, Field(ge=0, le=63)] | None = None
    flow_label: Annotated[int, Field(ge=1, le=0xFFFFF)] | None = None
    count: Annotated[int, Field(ge=1)] | None = None
    interval: Annotated[float, Field(gt=0)] | None = None
    timeout: Annotated[float, Field(gt=0, le=60)] | None = None
    size: Annotated[int, Field(ge=0, le=65527)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    proto: Literal["udp", "icmp", "tcp"] | None = None
    flows: Annotated[int, Field(ge=1, le=64)] | None = None
    queries: Annotated[int, Field(ge=1, le=10)] | None = None
    first_hop: Annotated[int, Field(ge=1, le=255)] | None = None
    max_hops: Annotated[int, Field(ge=1, le=255)] | None = None
    sim_queries: Annotated[int, Field(ge=1, le=64)] | None = None
    ssid: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    timestamp_format: Literal["ntp", "ptp"] | None = None
    multipath: bool = False
    report: bool = False
    json_output: bool = False  # --json

    def options(self) -> dict[str, object]:
        """The options given (not None, switches on), by field name."""
        return {
            name: value for name in OPTION_FLAGS if (value := getattr(self, name)) is not None and value is not False
        }

    def check_kind(self) -> ProbeStart:
        extra = sorted(set(self.options()) - set(KIND_OPTIONS[self.kind]))
        if extra:
            raise BadProbeMessage(f"{self.kind} probes take no {', '.join(extra)}")
        if self.slice is not None and self.dscp is not None:
            raise BadProbeMessage("give slice or dscp, not both")
        return self


class ProbeCancel(_Message):
    op: Literal["cancel"] = "cancel"
    id: Annotated[str, Field(pattern=ID_PATTERN.pattern)]


ProbeControl = ProbeStart | ProbeCancel
_CONTROL = TypeAdapter(Annotated[ProbeControl, Field(discriminator="op")])


def request_subject(site: str) -> str:
    return f"{REQUEST_ROOT}.{check_site(site)}"


def reply_subject(identity: str, request_id: str) -> str:
    return f"{REPLY_ROOT}.{identity}.{request_id}"


def reply_subjects(identity: str) -> str:
    """What `identity` may subscribe to: the replies to its own requests only."""
    return f"{REPLY_ROOT}.{identity}.>"


def requester_of(reply: str) -> str | None:
    """The identity a reply subject names, or None when it is not one of ours."""
    parts = reply.split(".")
    if len(parts) != 3 or parts[0] != REPLY_ROOT or not SITE_PATTERN.fullmatch(parts[1]):
        return None
    if not ID_PATTERN.fullmatch(parts[2]):
        return None
    return parts[1]


def encode_control(message: ProbeControl) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()


def decode_control(data: bytes) -> ProbeControl:
    if len(data) > MAX_REQUEST_BYTES:
        raise BadProbeMessage(f"a probe request is at most {MAX_REQUEST_BYTES} bytes, this one {len(data)}")
    try:
        message = _CONTROL.validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()[:5])
        raise BadProbeMessage(problems) from None
    return message.check_kind() if isinstance(message, ProbeStart) else message


def command_args(request: ProbeStart) -> list[str]:
    """The arguments after `xnetmon probe` that run `request` as the local command would."""
    argv: list[str] = [request.kind]
    for name, value in request.options().items():
        argv += [OPTION_FLAGS[name]] if name in SWITCHES else [OPTION_FLAGS[name], str(value)]
    return [*argv, "--", request.target]


# -- replies ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    site: str
    type: Literal["accepted"] = "accepted"


REFUSAL_CODES = ("target", "busy", "limits", "invalid", "failed")


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    code: str = "invalid"  # one of REFUSAL_CODES: what an API answers it with (403, 429, 400, 503)
    type: Literal["refused"] = "refused"


@dataclass(frozen=True, slots=True)
class Line:
    """One printed line (or part of one), an item of a `Lines` reply."""

    text: str
    stream: Literal["stdout", "stderr"] = "stdout"
    more: bool = False  # the line goes on in the next Line of this stream (it was too long for one)

    @property
    def end(self) -> str:
        """What follows `text` when it is printed."""
        return "" if self.more else "\n"


@dataclass(frozen=True, slots=True)
class Lines:
    """Lines printed since the previous batch, in order (a line in parts is consecutive)."""

    lines: tuple[Line, ...]
    type: Literal["lines"] = "lines"


def batches(lines: Iterable[Line]) -> Iterator[Lines]:
    """`lines` in as few replies as their bounds allow (MAX_BATCH_CHARS, MAX_BATCH_LINES)."""
    batch: list[Line] = []
    chars = 0
    for line in lines:
        if batch and (chars + len(line.text) > MAX_BATCH_CHARS or len(batch) == MAX_BATCH_LINES):
            yield Lines(tuple(batch))
            batch, chars = [], 0
        batch.append(line)
        chars += len(line.text)
    if batch:
        yield Lines(tuple(batch))


@dataclass(frozen=True, slots=True)
class End:
    exit_code: int
    cancelled: bool = False
    type: Literal["end"] = "end"


ProbeReply = Accepted | Refused | Lines | End  # on the wire; a client reads `Lines` as its Line items
FINAL_REPLIES = (Refused, End)


def encode_reply(reply: ProbeReply) -> bytes:
    if isinstance(reply, Accepted):
        fields: dict = {"type": reply.type, "site": reply.site}
    elif isinstance(reply, Refused):
        fields = {"type": reply.type, "reason": reply.reason, "code": reply.code}
    elif isinstance(reply, Lines):
        fields = {"type": reply.type, "lines": [_line_fields(line) for line in reply.lines[:MAX_BATCH_LINES]]}
    else:
        fields = {"type": reply.type, "exit_code": reply.exit_code, "cancelled": reply.cancelled}
    return json.dumps(fields).encode()


def _line_fields(line: Line) -> dict:
    fields: dict = {"stream": line.stream, "text": line.text[:MAX_LINE_CHARS]}
    if line.more:
        fields["more"] = True
    return fields


def _line_of(fields: dict) -> Line:
    stream = fields["stream"]
    if stream not in ("stdout", "stderr"):
        raise ValueError(stream)
    return Line(str(fields["text"]), stream, bool(fields.get("more", False)))


def decode_reply(data: bytes) -> ProbeReply:
    try:
        fields = json.loads(data)
        kind = fields["type"]
        if kind == "accepted":
            return Accepted(str(fields["site"]))
        if kind == "refused":
            code = fields["code"]
            if code not in REFUSAL_CODES:
                raise ValueError(code)
            return Refused(str(fields["reason"]), code)
        if kind == "lines":
            items = fields["lines"]
            if not isinstance(items, list) or len(items) > MAX_BATCH_LINES:
                raise ValueError("lines")
            return Lines(tuple(_line_of(item) for item in items))
        if kind == "end":
            return End(int(fields["exit_code"]), bool(fields["cancelled"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise BadProbeMessage(f"not a probe reply: {exc}") from None
    raise BadProbeMessage(f"not a probe reply: type {kind!r}")
