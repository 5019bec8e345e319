"""The per-slice status table, from an analyzer's `GET /slices`: for `xnetmon status` and
the live view of `xnetmon run`, with each slice's root-cause hints in a row under it; and
hints in plain words (`describe_hint`), which `xnetmon why` uses too."""

from __future__ import annotations

import time

import httpx
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"ok": "green", "at-risk": "yellow", "breached": "bold red", "no-data": "dim", "no-policy": "dim"}


class AnalyzerUnreachable(Exception):
    pass


def fetch(url: str, path: str = "/slices", timeout: float = 5.0):
    """GET a JSON document from the analyzer; a clear error when it is not there."""
    try:
        response = httpx.get(url.rstrip("/") + path, timeout=timeout)
    except httpx.HTTPError as exc:
        raise AnalyzerUnreachable(
            f"no analyzer answers at {url} ({exc.__class__.__name__}): start one with "
            "`xnetmon analyzer` or `xnetmon run`, or name it with --analyzer URL"
        ) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise AnalyzerUnreachable(f"{url}{path}: {response.status_code} {detail}")
    return response.json()


def _ago(since_ns: int | None, now_s: float) -> str:
    if not since_ns:
        return "-"
    seconds = max(0, int(now_s - since_ns / 1e9))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _worst(path: dict | None) -> str:
    if not path:
        return "-"
    ref, latest = path["path"], path["latest"]
    p99 = latest.get("rtt_p99_s")
    delay = f", p99 {p99 * 1000:.3f} ms" if p99 is not None else ""
    return f"{ref['source']}>{ref['target']} loss {latest['loss_ratio']:.1%}{delay}"


def _page_pair(burns: dict) -> str:
    """The policy's first burn-rate pair (long and short lookback, e.g. 1h and 5m): what pages
    first. The other pairs are in the API and /metrics."""
    pair = list(burns.items())[:2]
    return "  ".join(f"{label} {rate:.1f}" for label, rate in pair) or "-"


KIND_WORDS = {
    "link-loss": "loss on {}",
    "link-down": "{} down",
    "node-down": "{} down",
    "congestion": "congestion on {}",
    "latency-shift": "a delay step on {}",
    "path-change": "a path change at {}",
    "slice-isolation": "the slice starved on {} (other slices fine there)",
    "probe-host": "trouble of {}",
    "reflector-down": "{} not answering",
    "one-direction": "a fault in one direction on {}",
    "node-loss": "loss inside {}",
    "congestion|slice-isolation": "congestion or the slice starved on {} (the probes cannot tell which)",
}


def clock_time(ns: int | None) -> str:
    return "-" if not ns else time.strftime("%H:%M:%S", time.localtime(ns / 1e9))


def component_words(name: str) -> str:
    """ "a>b" -> "link a>b", "host:x" -> "the probing agent on x", "service:x" -> "the
    reflector of x", anything else -> "node NAME"."""
    if name.startswith("host:"):
        return f"the probing agent on {name[5:]}"
    if name.startswith("service:"):
        return f"the reflector of {name[8:]}"
    return f"link {name}" if ">" in name else f"node {name}"


def describe_hint(hint: dict) -> str:
    """ "loss on link prov2>city2a (confidence 0.90), affecting video, egov, since 10:42:03"."""
    suspects = [component_words(s) for s in hint["suspects"]]
    where = suspects[0] if len(suspects) == 1 else (f"one of {', '.join(suspects)} (the probes cannot tell them apart)")
    return (
        f"{KIND_WORDS.get(hint['kind'], hint['kind'] + ' at {}').format(where)} "
        f"(confidence {hint['confidence']:.2f}), "
        f"affecting {', '.join(hint['slices'])}, since {clock_time(hint.get('first_seen_ns'))}"
    )


def slice_table(slices: list[dict], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("slice", no_wrap=True, min_width=11)
    table.add_column("status", no_wrap=True, min_width=8)
    for name in ("since", "budget", "burn rate (page pair)", "paths"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("worst path")
    now = time.time()
    for s in slices:
        budget = s.get("error_budget_remaining")
        burns = s.get("burn_rates") or {}
        table.add_row(
            s["name"],
            Text(s["status"], style=STATUS_STYLE.get(s["status"], "")),
            _ago(s.get("since_ns"), now),
            "-" if budget is None else f"{budget:.1%}",
            _page_pair(burns),
            str(s.get("paths", 0)),
            _worst(s.get("worst_path")),
        )
        for hint in s.get("hints") or ():
            table.add_row(
                "", Text("hint", style="cyan"), _ago(hint.get("first_seen_ns"), now), "", "", "", describe_hint(hint)
            )
    return table


def objective_table(detail: dict) -> Table:
    """One slice's objectives: the latest interval's value against each bound."""
    verdict = detail["verdict"]
    table = Table(title=f"{detail['name']}: objectives of the latest interval", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("objective", "left"),
        ("observed", "right"),
        ("bound", "right"),
        ("met", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for o in verdict.get("objectives", []):
        unit_is_time = "delay" in o["name"]
        show = (lambda v: f"{v * 1000:.3f} ms") if unit_is_time else (lambda v: f"{v:.4%}")
        met = o.get("met")
        table.add_row(
            o["name"] + (f" p{o['percentile']:g}" if o.get("percentile") else ""),
            "-" if o.get("observed") is None else show(o["observed"]),
            show(o["bound"]),
            Text(
                "-" if met is None else ("yes" if met else "NO"),
                style="" if met is None else ("green" if met else "bold red"),
            ),
        )
    return table
