"""`xnetmon why SLICE`: the current explanation of a slice's state, in plain words.

Asks a running analyzer for the slice (`GET /slices/NAME`: its verdict and the root-cause
hints that affect it) and prints what an operator paged for it wants to read next:

    video: breached since 10:42:05 (two-way-delay-percentile p99 212 ms > 150 ms).
    Most likely: loss on link prov2>city2a (confidence 0.90), affecting video, egov, since 10:42:03.
    Evidence: ...
    In-situ segments (marked flows): prov2>city2a link lost 41 of 8,012 (0.51%), delay 0.3 ms; ...

The segment figures come from `GET /segments?slice=NAME` (in-situ flow telemetry): the
segments that lost packets first, then the end-to-end figure; none when nothing is marked.

Exit status: 0 when the slice is ok (or has no data or no policy), 1 when it is degraded
(at-risk or breached), 2 on error (no analyzer, unknown slice), as `xnetmon status` does.
"""

from __future__ import annotations

import argparse
import json

from xnetmon.commands.status import DEFAULT_ANALYZER
from xnetmon.errors import UsageError

DEGRADED = ("at-risk", "breached")
EVIDENCE_SHOWN = 3  # sentences per hint; --json has them all
SEGMENTS_SHOWN = 5  # segments named; --json has them all


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "why",
        help="why a slice is in its state: its verdict and the most likely root cause, in words",
        description="Print the slice's SLA status, the objectives it misses and the root-cause hints that "
        "affect it, from a running analyzer. Exit status 0 ok, 1 degraded (at-risk or breached), 2 error.",
    )
    p.add_argument("slice", help="the slice's name, e.g. video")
    p.add_argument(
        "--analyzer", default=DEFAULT_ANALYZER, metavar="URL", help=f"the analyzer's API (default {DEFAULT_ANALYZER})"
    )
    p.add_argument("--json", action="store_true", help="the slice's verdict and hints as the analyzer gives them")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from xnetmon.status_view import AnalyzerUnreachable, fetch

    try:
        detail = fetch(args.analyzer, f"/slices/{args.slice}")
    except AnalyzerUnreachable as exc:
        raise UsageError(str(exc)) from None
    try:
        segments = fetch(args.analyzer, f"/segments?slice={args.slice}&limit=0")["segments"]
    except AnalyzerUnreachable:
        segments = []  # an analyzer without in-situ telemetry
    if args.json:
        print(
            json.dumps(
                {
                    "name": detail["name"],
                    "verdict": detail["verdict"],
                    "hints": detail.get("hints", []),
                    "segments": segments,
                },
                indent=2,
            )
        )
    else:
        print(explain(detail, segments))
    return 1 if detail["verdict"]["status"] in DEGRADED else 0


def explain(detail: dict, segments: list[dict] | None = None) -> str:
    """The slice's state, its hints and its in-situ segments as a few sentences."""
    from xnetmon.status_view import clock_time, describe_hint

    name, verdict, hints = detail["name"], detail["verdict"], detail.get("hints") or []
    status = verdict["status"]
    if status == "no-policy":
        lines = [f"{name}: no SLA policy names this slice, so it has no verdict."]
    elif status == "no-data":
        lines = [f"{name}: no data yet (no probes judged in its recent intervals)."]
    else:
        missed = [_objective_words(o) for o in verdict.get("objectives", []) if o.get("met") is False]
        reason = f" ({'; '.join(missed)})" if missed else ""
        lines = [f"{name}: {status} since {clock_time(verdict.get('since_ns'))}{reason}."]
    if hints:
        first, *others = hints
        lines.append(f"Most likely: {describe_hint(first)}.")
        lines.extend(f"Evidence: {sentence}" for sentence in first.get("evidence", [])[:EVIDENCE_SHOWN])
        lines.extend(f"Also: {describe_hint(h)}." for h in others)
    elif status in DEGRADED:
        lines.append(
            "No root-cause hint yet: the probes do not point at one part of the network "
            "(look at `xnetmon status --slice " + name + "` and the worst paths)."
        )
    else:
        lines.append("No root-cause hint: nothing in the network is suspected.")
    if segments:
        lines.append(f"In-situ segments (marked flows): {segment_words(segments)}.")
    return "\n".join(lines)


def segment_words(segments: list[dict]) -> str:
    """The losing segments first (most lost first), then end to end; a clean slice in a few words."""
    losing = sorted((s for s in segments if s["lost"] and s["kind"] != "end-to-end"), key=lambda s: -s["lost"])
    ends = [s for s in segments if s["kind"] == "end-to-end"]
    shown = (losing or [s for s in segments if s["kind"] != "end-to-end"][:1]) + ends

    def one(segment: dict) -> str:
        delay = segment.get("last_delay_ns")
        words = (
            f"{segment['segment']} {segment['kind']} lost {segment['lost']:,} of {segment['packets']:,} "
            f"({segment['loss_ratio']:.2%})"
        )
        words += f", delay {delay / 1e6:.1f} ms" if delay is not None else ""
        unknown = segment.get("unknown_blocks", 0)  # an older analyzer does not say
        return words + (f", {unknown:,} block(s) unknown (a counting point's capture dropped)" if unknown else "")

    more = len(losing) + len(ends) - SEGMENTS_SHOWN
    return "; ".join(one(s) for s in shown[:SEGMENTS_SHOWN]) + (f"; {more} more" if more > 0 else "")


def _objective_words(objective: dict) -> str:
    """ "two-way-delay-percentile p99 212 ms > 150 ms", "two-way-packet-loss 3.0% > 0.1%"."""
    name, observed, bound = objective["name"], objective.get("observed"), objective["bound"]
    label = name + (f" p{objective['percentile']:g}" if objective.get("percentile") else "")

    def show(value: float) -> str:
        if "delay" in name:
            return f"{value * 1000:.0f} ms" if value != float("inf") else "over 1 s"
        return f"{value:.2%}"

    relation = "<" if name == "availability" else ">"
    return f"{label} {'-' if observed is None else show(observed)} {relation} {show(bound)}"
