"""What `POST /probe` runs at a site and what it answers: the request as the local probe
command's options (a `ProbeStart`, whether the bus carries it or the all-in-one runs it in
the site), and the command's `--json` output as the API's result.

stamp and icmp send `count` probes and answer their summary line (`{"summary": {...}}`);
trace runs `count` rounds of one flow's mtr-style report (`--report`: the hop list with each
hop's loss and RTT) and answers its document as `{"trace": {...}}`. A trace that does not
reach its target still answers (its document says so), as the local command prints it.
"""

from __future__ import annotations

import json

from analyzer.api.models import ProbeRequest
from collector.bus.probe_requests import ProbeStart

API_INTERVAL_S = 0.1  # a count of 10 answers in about a second


def probe_start(request: ProbeRequest, request_id: str, stamp_port: int | None = None) -> ProbeStart:
    """The local command's options for `request`; `stamp_port`: the reflectors' port when not
    STAMP's own."""
    return ProbeStart(
        id=request_id,
        kind=request.kind,
        target=request.target,
        slice=request.slice,
        count=request.count,
        interval=API_INTERVAL_S,
        port=stamp_port if request.kind == "stamp" else None,
        report=request.kind == "trace",
        json_output=True,
    ).check_kind()


def probe_answer(kind: str, printed: list[str]) -> dict | None:
    """The result in the lines the command printed on stdout, or None where it printed none."""
    documents = [line for line in printed if line.startswith("{")]
    if kind == "trace":
        return {"trace": json.loads(documents[-1])} if documents else None
    for line in reversed(documents):
        if '"summary"' in line:
            return json.loads(line)
    return None
