"""Alert rules, each with the promtool unit tests that show it fires when it should and
stays silent when it should not.

Slice alerts are generated per slice from its SLA policy (`dashboards.config`):
- `XnetSliceErrorBudgetBurn`, one rule per burn window of the policy (the SRE workbook's
  multi-window multi-burn-rate pairs: page at 14.4x over 1h and 5m or 6x over 6h and 30m,
  ticket at 1x over 3d and 6h by default). It reads `xnet_slice_burn_rate`, the analyzer's
  own burn rates, rather than re-deriving error ratios from counters: the slice's SLI is
  the share of intervals that met every objective (delay percentile, jitter, loss and
  availability together), which the analyzer judges per interval from the windows' exact
  bucket counts and keeps across restarts; PromQL over counters could only approximate
  the loss and delay parts. `XnetAnalyzerDown` covers the cost: no analyzer, no burn rate.
  `for` is 40% of the short window, so one evaluation blip does not page.
- `XnetPathLossHigh` / `XnetPathLatencyHigh`: one path above the slice's loss or delay bound.
- `XnetSegmentLossHigh`: one in-situ segment (a link, node or span between two counting
  points) losing more of the slice's marked traffic than the slice's loss bound; the
  end-to-end figure is left out, the path alerts and the segments that make it up cover it.
Plus `XnetSliceDown` (every probe of some site pair in a slice lost over three scrapes,
no `for`: the three-scrape lookback is the debounce), `XnetNodeDown` from the root-cause
hints, `XnetPathChanged`, and the agents' and analyzer's own health (`XnetAnalyzerDown`, and
`XnetAnalyzerBusLost` for an analyzer that runs but has been cut off from its bus for 2 minutes:
longer than a server restart or a stream leader moving, which the agents' spools ride out).

Every alert has labels `severity` (critical pages, warning makes a ticket, info is for the
dashboard) and `scope` (slice, node, path, collector: what Alertmanager inhibits by), and
annotations `summary`, `description` (slice, sites and the top root-cause hint) and
`runbook_url`. Annotations are written as Python format strings over fragments so that the
unit tests can state the exact text Prometheus must render.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from analyzer.sla.verdicts import duration_label
from dashboards import rules
from dashboards.config import MixinConfig
from dashboards.promql import counter_rate, one_replica

PATH_DOWN_RATIO = 0.99  # "total loss": at most one reply in a hundred probes
NODE_DOWN_CONFIDENCE = 0.5
FOR_SHARE_OF_SHORT_WINDOW = 0.4
SEVERITY_OF = {"page": "critical", "ticket": "warning"}


@dataclass(frozen=True)
class Case:
    """One promtool unit test: input series, when to look, which alerts must be firing
    (`expected` empty: the alert must stay silent)."""

    name: str
    series: dict[str, str]
    eval_time: str
    expected: tuple[dict, ...] = ()
    interval: str = "15s"


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    severity: str
    scope: str
    summary: str
    description: str
    signals: tuple[str, ...]  # what the expression compares: each must return data on a live system
    for_: str = "0s"
    labels: dict[str, str] = field(default_factory=dict)
    cases: tuple[Case, ...] = ()

    def rule(self, config: MixinConfig) -> dict:
        body: dict[str, object] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0s":
            body["for"] = self.for_
        body["labels"] = {"severity": self.severity, "scope": self.scope, **self.labels}
        body["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": config.runbook_url(self.name),
        }
        return body


# -- annotation fragments: the Go template, and what it renders to in the unit tests ---------


def hint_of(slice_selector: str) -> str:
    """The slice's most confident root-cause hint, or 'none yet'."""
    return (
        '{{ range query (printf "' + rules.TOP_HINT + '{slice=%q}" ' + slice_selector + ") }}"
        "{{ .Labels.kind }} at {{ .Labels.suspect }} (confidence {{ .Value | humanizePercentage }})"
        "{{ else }}none yet{{ end }}"
    )


def paths_of(query: str, slice_selector: str, value: str = "") -> str:
    """The paths a query returns for the slice, as 'src→dst' (with `value` after each), or 'none'."""
    return (
        "{{ range $i, $p := query (printf `" + query + "` " + slice_selector + ') | sortByLabel "src" }}'
        "{{ if $i }}, {{ end }}{{ $p.Labels.src }}→{{ $p.Labels.dst }}" + value + "{{ else }}none{{ end }}"
    )


def rendered_hint(kind: str | None = None, suspect: str = "", confidence_pct: str = "") -> str:
    return "none yet" if kind is None else f"{kind} at {suspect} (confidence {confidence_pct})"


HINT_SERIES = 'xnet_rootcause_hint{slice="%s",kind="link-loss",suspect="core>prov2"}'
MALFORMED_STAMP_SERIES = (
    'xnet_malformed_packets_total{job="xnet-agent",instance="a:9862",protocol="stamp",kind="short"}'
)


def firing_case(
    name: str,
    given: dict[str, str],
    eval_time: str,
    labels: dict,
    *,
    summary: str,
    description: str,
    runbook_url: str,
    interval: str = "15s",
) -> Case:
    """A case in which the alert fires once, with these labels and exactly this text."""
    annotations = {"summary": summary, "description": description, "runbook_url": runbook_url}
    return Case(name, given, eval_time, ({"exp_labels": labels, "exp_annotations": annotations},), interval)


# -- the alerts ----------------------------------------------------------------------------


def slice_down(config: MixinConfig) -> AlertRule:
    fast = config.fast_window
    dead = f"{rules.path_loss(fast)}{{slice=%q}} >= {PATH_DOWN_RATIO:g}"
    summary = "Slice {slice} carries nothing between some sites"
    description = (
        "Every probe in slice {slice} was lost over the last " + fast + " on: {paths}. Root-cause hint: {hint}."
    )
    url = config.runbook_url("XnetSliceDown")
    labels = {"severity": "critical", "scope": "slice", "slice": "video"}
    every_probe, none = "0+150x40", "0+0x40"  # per 15 s step: 150 probes sent; all of them lost, or none
    lost_forward = 'xnet_probe_lost_total{src="cnty1a",dst="cnty2b",slice="video",probe="stamp",direction="forward"}'
    given = {  # cnty1a→cnty2b loses everything, cnty1a→core nothing
        'xnet_probe_sent_total{src="cnty1a",dst="cnty2b",slice="video",probe="stamp"}': every_probe,
        lost_forward: every_probe,
        'xnet_probe_sent_total{src="cnty1a",dst="core",slice="video",probe="stamp"}': every_probe,
        'xnet_probe_lost_total{src="cnty1a",dst="core",slice="video",probe="stamp",direction="forward"}': none,
    }
    with_hint = {**given, HINT_SERIES % "video": "0.8x40"}
    cases = (
        firing_case(
            "slice down: one site pair loses every probe",
            given,
            "5m",
            labels,
            summary=summary.format(slice="video"),
            description=description.format(slice="video", paths="cnty1a→cnty2b", hint=rendered_hint()),
            runbook_url=url,
        ),
        firing_case(
            "slice down: the hint is quoted",
            with_hint,
            "5m",
            labels,
            summary=summary.format(slice="video"),
            description=description.format(
                slice="video", paths="cnty1a→cnty2b", hint=rendered_hint("link-loss", "core>prov2", "80%")
            ),
            runbook_url=url,
        ),
        Case(
            "slice down: heavy but not total loss stays silent",
            {
                'xnet_probe_sent_total{src="cnty1a",dst="cnty2b",slice="video",probe="stamp"}': every_probe,
                lost_forward: "0+140x40",
            },
            "5m",
        ),
    )
    return AlertRule(
        "XnetSliceDown",
        f"count by (slice) ({one_replica(rules.path_loss(fast))} >= {PATH_DOWN_RATIO:g}) > 0",
        "critical",
        "slice",
        summary.format(slice="{{ $labels.slice }}"),
        description.format(
            slice="{{ $labels.slice }}", paths=paths_of(dead, "$labels.slice"), hint=hint_of("$labels.slice")
        ),
        signals=(rules.path_loss(fast),),
        cases=cases,
    )


def burn_rate_alerts(config: MixinConfig) -> list[AlertRule]:
    alerts = []
    for slice_name, policy in config.policies.items():
        for window in policy.burn_windows:
            long_w, short_w = duration_label(window.long_s), duration_label(window.short_s)
            alerts.append(
                _burn_rate(
                    config,
                    slice_name,
                    long_w,
                    short_w,
                    window.factor,
                    SEVERITY_OF[window.severity],
                    duration_label(window.short_s * FOR_SHARE_OF_SHORT_WINDOW),
                )
            )
    return alerts


def _burn_rate(
    config: MixinConfig, slice_name: str, long_w: str, short_w: str, factor: float, severity: str, for_: str
) -> AlertRule:
    name = "XnetSliceErrorBudgetBurn"
    burn = 'max by (slice) (xnet_slice_burn_rate{slice="%s", window="%s"})'
    slice_q = f'"{slice_name}"'
    summary = f"Slice {slice_name} burns its error budget {factor:g}x too fast ({long_w} and {short_w})"
    description = (
        "Slice " + slice_name + " spent its error budget at more than " + f"{factor:g}" + " times the "
        "sustainable rate over both " + long_w + " and " + short_w + "; " + "{left} of the budget is left. "
        "Paths losing probes now: {paths}." + "{slow} Root-cause hint: {hint}."
    )
    left = (
        '{{ range query `min(xnet_slice_error_budget_remaining_ratio{slice="' + slice_name + '"})` }}'
        "{{ .Value | humanizePercentage }}{{ else }}an unknown share{{ end }}"
    )
    labels = {
        "severity": severity,
        "scope": "slice",
        "long_window": long_w,
        "short_window": short_w,
        "slice": slice_name,
    }
    over, under = f"{factor * 2:g}x200", f"{factor / 2:g}x200"
    long_s, short_s = burn % (slice_name, long_w), burn % (slice_name, short_w)
    raw = 'xnet_slice_burn_rate{slice="%s",window="%s"}'
    given = {
        raw % (slice_name, long_w): over,
        raw % (slice_name, short_w): over,
        f'xnet_slice_error_budget_remaining_ratio{{slice="{slice_name}"}}': "0.5x200",
        HINT_SERIES % slice_name: "0.8x200",
    }
    fire_at = _after(for_)
    slow, slow_text = "", ""
    delay = config.delay_objective(slice_name)
    if delay is not None:  # the paths over the slice's delay bound, when it has one
        slow = (
            " Paths over "
            + f"{delay.bound * 1000:g}"
            + " ms at p99 (5m): "
            + paths_of(
                rules.PATH_RTT_P99 + "{slice=%q} > " + f"{delay.bound:g}",
                slice_q,
                " ({{ $p.Value | humanizeDuration }})",
            )
            + "."
        )
        slow_text = f" Paths over {delay.bound * 1000:g} ms at p99 (5m): none."
    cases = (
        firing_case(
            f"burn {slice_name} {long_w}/{short_w}: both windows over {factor:g}x",
            given,
            fire_at,
            labels,
            interval="1m",
            summary=summary,
            description=description.format(
                left="50%", paths="none", slow=slow_text, hint=rendered_hint("link-loss", "core>prov2", "80%")
            ),
            runbook_url=config.runbook_url(name),
        ),
        Case(
            f"burn {slice_name} {long_w}/{short_w}: the short window has recovered",
            {raw % (slice_name, long_w): over, raw % (slice_name, short_w): under},
            fire_at,
            interval="1m",
        ),
    )
    return AlertRule(
        name,
        f"{long_s} > {factor:g}\nand\n{short_s} > {factor:g}",
        severity,
        "slice",
        summary,
        description.format(
            left=left,
            paths=paths_of(
                rules.path_loss(config.fast_window) + "{slice=%q} > 0",
                slice_q,
                " ({{ $p.Value | humanizePercentage }})",
            ),
            slow=slow,
            hint=hint_of(slice_q),
        ),
        signals=(long_s, short_s),
        for_=for_,
        labels={"long_window": long_w, "short_window": short_w, "slice": slice_name},
        cases=cases,
    )


def _after(for_: str) -> str:
    """An evaluation time safely past a `for` (and past the series' first minutes)."""
    return f"{int(_seconds(for_)) + 120}s"


def _seconds(label: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in ("ms", "s", "m", "h", "d"):
        if label.endswith(unit) and label[: -len(unit)].isdigit():
            return int(label[: -len(unit)]) * units[unit]
    raise ValueError(f"not a duration label: {label!r}")


def path_alerts(config: MixinConfig) -> list[AlertRule]:
    alerts = []
    for slice_name in config.policies:
        bound = config.loss_bound(slice_name)
        if bound is not None:
            alerts.append(
                _path_threshold(
                    config,
                    "XnetPathLossHigh",
                    slice_name,
                    one_replica(f'{rules.path_loss("5m")}{{slice="{slice_name}"}}'),
                    bound,
                    "lost {value} of its probes over 5m",
                    f"{bound:.2%} loss",
                    _loss_series(slice_name, bound),
                    _humanize_percentage(3 * bound),
                )
            )
        delay = config.delay_objective(slice_name)
        if delay is not None:
            # The share of replies slower than the bound, read exactly from the bucket at the bound
            # (every delay bound is a bucket bound), against the share the percentile allows.
            assert delay.percentile is not None  # the delay objective is a percentile (policies check it)
            allowed = round(1 - delay.percentile / 100, 6)
            alerts.append(
                _path_threshold(
                    config,
                    "XnetPathLatencyHigh",
                    slice_name,
                    _slow_share(slice_name, delay.bound),
                    allowed,
                    f"had {{value}} of its replies slower than {delay.bound * 1000:g} ms over 5m",
                    f"p{delay.percentile:g} {delay.bound * 1000:g} ms, so at most {allowed:.2%} slower",
                    _rtt_series(slice_name, delay.bound),
                    "100%",
                )
            )
    return alerts


def segment_loss_alerts(config: MixinConfig) -> list[AlertRule]:
    """One rule per slice with a loss bound. The bound is the slice's two-way one: a single
    segment of one direction losing more already breaks it."""
    name = "XnetSegmentLossHigh"
    alerts = []
    for slice_name in config.policies:
        bound = config.loss_bound(slice_name)
        if bound is None:
            continue
        signal = one_replica(f'{rules.SEGMENT_LOSS}{{slice="{slice_name}", kind!="end-to-end"}}')
        summary = "Segment {segment} in slice " + slice_name + " loses more than the slice's bound"
        description = (
            "Segment {segment} ({kind}) in slice " + slice_name + " lost {value} of its marked packets over 5m "
            f"(bound: {bound:.2%} loss). Root-cause hint: {{hint}}."
        )
        link = {"segment": "city1a>core", "kind": "link"}
        labels = {"severity": "warning", "scope": "path", "slice": slice_name, **link}
        cases = (
            firing_case(
                f"{slice_name}: a link's segment over the bound for 10m",
                _segment_series(slice_name, link, 3 * bound),
                "20m",
                labels,
                interval="1m",
                summary=summary.format(**link),
                description=description.format(**link, value=_humanize_percentage(3 * bound), hint=rendered_hint()),
                runbook_url=config.runbook_url(name),
            ),
            Case(
                f"{slice_name}: a segment under the bound stays silent",
                _segment_series(slice_name, link, bound / 3),
                "20m",
                interval="1m",
            ),
            Case(
                f"{slice_name}: the end-to-end figure over the bound stays silent",
                _segment_series(slice_name, {"segment": "cnty1a>cnty2b", "kind": "end-to-end"}, 3 * bound),
                "20m",
                interval="1m",
            ),
        )
        alerts.append(
            AlertRule(
                name,
                f"{signal} > {bound:g}",
                "warning",
                "path",
                summary.format(segment="{{ $labels.segment }}"),
                description.format(
                    segment="{{ $labels.segment }}",
                    kind="{{ $labels.kind }}",
                    value="{{ $value | humanizePercentage }}",
                    hint=hint_of(f'"{slice_name}"'),
                ),
                signals=(signal,),
                for_="5m",
                labels={"slice": slice_name},
                cases=cases,
            )
        )
    return alerts


def _segment_series(slice_name: str, segment: dict[str, str], loss: float) -> dict[str, str]:
    """The analyzer's segment counters: 1000 marked packets a minute, `loss` of them lost."""
    key = f'job="xnet-analyzer",slice="{slice_name}",segment="{segment["segment"]}",kind="{segment["kind"]}"'
    return {
        f"xnet_segment_packets_total{{{key}}}": "0+1000x80",
        f"xnet_segment_lost_packets_total{{{key}}}": f"0+{round(1000 * loss)}x80",
    }


def _slow_share(slice_name: str, bound: float) -> str:
    by, sel = "slice, src, dst", f'slice="{slice_name}"'
    at_bound = f'xnet_rtt_seconds_bucket{{{sel}, le="{floatToGoString(bound)}"}}'
    return (
        f"1 - (sum by ({by}) ({counter_rate(at_bound, '5m')})\n"
        f"/ sum by ({by}) ({counter_rate(f'xnet_rtt_seconds_count{{{sel}}}', '5m')}))"
    )


def _loss_series(slice_name: str, bound: float) -> tuple[dict[str, str], dict[str, str]]:
    """(over the bound, under it): 1000 probes a minute, three times or a third of the bound lost."""
    key = f'src="cnty1a",dst="cnty2b",slice="{slice_name}",probe="stamp"'
    sent = {f"xnet_probe_sent_total{{{key}}}": "0+1000x80"}
    lost = f'xnet_probe_lost_total{{{key},direction="forward"}}'
    return ({**sent, lost: f"0+{round(3000 * bound)}x80"}, {**sent, lost: f"0+{round(1000 * bound / 3)}x80"})


def _rtt_series(slice_name: str, bound: float) -> tuple[dict[str, str], dict[str, str]]:
    """(over the bound, under it): every reply slower than the bound, or every one faster."""
    key = f'src="cnty1a",dst="cnty2b",slice="{slice_name}",probe="stamp"'
    at_bound = f'xnet_rtt_seconds_bucket{{{key},le="{floatToGoString(bound)}"}}'
    everything = {
        f'xnet_rtt_seconds_bucket{{{key},le="+Inf"}}': "0+100x80",
        f"xnet_rtt_seconds_count{{{key}}}": "0+100x80",
    }
    return ({**everything, at_bound: "0x80"}, {**everything, at_bound: "0+100x80"})


def _path_threshold(
    config: MixinConfig,
    name: str,
    slice_name: str,
    signal: str,
    threshold: float,
    what: str,
    bound_text: str,
    series_pair: tuple[dict, dict],
    shown_value: str,
) -> AlertRule:
    summary = "Path {src}→{dst} in slice " + slice_name + " is over the slice's bound"
    description = (
        "Path {src}→{dst} in slice " + slice_name + " {what} (bound: " + bound_text + "). Root-cause hint: {hint}."
    )
    labels = {"severity": "warning", "scope": "path", "slice": slice_name, "src": "cnty1a", "dst": "cnty2b"}
    bad, good = series_pair
    cases = (
        firing_case(
            f"{slice_name}: over the bound for 10m",
            bad,
            "20m",
            labels,
            interval="1m",
            summary=summary.format(src="cnty1a", dst="cnty2b"),
            description=description.format(
                src="cnty1a", dst="cnty2b", what=what.format(value=shown_value), hint=rendered_hint()
            ),
            runbook_url=config.runbook_url(name),
        ),
        Case(f"{slice_name}: under the bound stays silent", good, "20m", interval="1m"),
    )
    return AlertRule(
        name,
        f"{signal} > {threshold:g}",
        "warning",
        "path",
        summary.format(src="{{ $labels.src }}", dst="{{ $labels.dst }}"),
        description.format(
            src="{{ $labels.src }}",
            dst="{{ $labels.dst }}",
            what=what.format(value="{{ $value | humanizePercentage }}"),
            hint=hint_of(f'"{slice_name}"'),
        ),
        signals=(signal,),
        for_="5m",
        labels={"slice": slice_name},
        cases=cases,
    )


def _humanize_percentage(ratio: float) -> str:
    """Prometheus' humanizePercentage for the values the tests use (4 significant digits)."""
    return f"{ratio * 100:.4g}%"


def node_down(config: MixinConfig) -> AlertRule:
    name = "XnetNodeDown"
    summary = "Node {suspect} looks down (slice {slice})"
    description = (
        "The analyzer's root-cause engine blames node {suspect} for what slice {slice} sees "
        "(confidence {confidence}). Per-path alerts of the slice are held back while this fires."
    )
    hint = 'xnet_rootcause_hint{slice="video",kind="%s",suspect="city2b"}'
    labels = {"severity": "critical", "scope": "node", "slice": "video", "suspect": "city2b"}
    cases = (
        firing_case(
            "node down: a confident node-down hint",
            {hint % "node-down": "0.9x20"},
            "2m",
            labels,
            summary=summary.format(suspect="city2b", slice="video"),
            description=description.format(suspect="city2b", slice="video", confidence="90%"),
            runbook_url=config.runbook_url(name),
        ),
        Case(
            "node down: a link hint or a weak node hint stays silent",
            {
                hint % "link-down": "0.9x20",
                'xnet_rootcause_hint{slice="egov",kind="node-down",suspect="city2b"}': "0.2x20",
            },
            "2m",
        ),
    )
    return AlertRule(
        name,
        f'max by (slice, suspect) (xnet_rootcause_hint{{kind="node-down"}}) >= {NODE_DOWN_CONFIDENCE:g}',
        "critical",
        "node",
        summary.format(suspect="{{ $labels.suspect }}", slice="{{ $labels.slice }}"),
        description.format(
            suspect="{{ $labels.suspect }}", slice="{{ $labels.slice }}", confidence="{{ $value | humanizePercentage }}"
        ),
        signals=('xnet_rootcause_hint{kind="node-down"}',),
        cases=cases,
    )


def path_changed(config: MixinConfig) -> AlertRule:
    name = "XnetPathChanged"
    summary = "The hop list of {src}→{dst} in slice {slice} changed"
    description = (
        "Traceroute saw {count} different hop lists for {src}→{dst} in slice {slice} within 15m: "
        "a reroute, ECMP rehash or flapping link. Root-cause hint: {hint}."
    )
    key = 'src="cnty1a",dst="cnty2b",slice="video",probe="stamp",address="fd00::2"'
    labels = {"severity": "info", "scope": "path", "slice": "video", "src": "cnty1a", "dst": "cnty2b", "probe": "stamp"}
    cases = (
        firing_case(
            "path changed: a second fingerprint appears",
            {
                f'xnet_path_info{{{key},fingerprint="aaaa"}}': "1x5 _x10",
                f'xnet_path_info{{{key},fingerprint="bbbb"}}': "_x5 1x10",
            },
            "10m",
            labels,
            interval="1m",
            summary=summary.format(src="cnty1a", dst="cnty2b", slice="video"),
            description=description.format(count="2", src="cnty1a", dst="cnty2b", slice="video", hint=rendered_hint()),
            runbook_url=config.runbook_url(name),
        ),
        Case(
            "path changed: one fingerprint (and the untraced empty one) stays silent",
            {
                f'xnet_path_info{{{key},fingerprint=""}}': "1x2 _x13",
                f'xnet_path_info{{{key},fingerprint="aaaa"}}': "_x2 1x13",
            },
            "10m",
            interval="1m",
        ),
    )
    return AlertRule(
        name,
        # Distinct fingerprints, so the replicas of a Prometheus HA pair are not counted as paths.
        "count by (slice, src, dst, probe) (count by (slice, src, dst, probe, fingerprint) "
        '(count_over_time(xnet_path_info{fingerprint!=""}[15m]))) > 1',
        "info",
        "path",
        summary.format(src="{{ $labels.src }}", dst="{{ $labels.dst }}", slice="{{ $labels.slice }}"),
        description.format(
            count="{{ $value }}",
            src="{{ $labels.src }}",
            dst="{{ $labels.dst }}",
            slice="{{ $labels.slice }}",
            hint=hint_of("$labels.slice"),
        ),
        signals=('xnet_path_info{fingerprint!=""}',),
        cases=cases,
    )


@dataclass(frozen=True)
class HealthAlert:
    """A collector-health alert: one signal compared with a threshold, labelled by `by`."""

    name: str
    signal: str
    threshold: str  # e.g. "> 0.05"
    severity: str
    for_: str
    summary: str  # may use {{ $labels.X }} of `by`
    description: str  # may use {{ $value }} and the labels
    bad: dict[str, str]  # input series that fire it
    good: dict[str, str]  # input series that do not
    labels: dict[str, str]  # the alert's labels in the firing case
    value_text: str = ""  # how the firing case's value renders where the templates show it

    def rendered(self, template: str) -> str:
        """`template` as Prometheus renders it for the firing case."""
        text = re.sub(r"\{\{ \$value[^}]*\}\}", self.value_text, template)
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: self.labels[m.group(1)], text)


def health_alerts(config: MixinConfig) -> list[AlertRule]:
    agent = config.agent_job
    lag = 'xnet_collector_scheduling_lag_seconds{src="cnty1a",quantile="0.99"}'
    spool = 'xnet_collector_spool_windows{src="cnty1a"}'
    bus = f'xnet_analyzer_bus_connected{{job="{config.analyzer_job}",instance="a:9863"}}'
    specs = [
        HealthAlert(
            "XnetAnalyzerDown",
            f'absent(up{{job="{config.analyzer_job}"}} == 1)',
            "",
            "critical",
            "2m",
            "The xnetmon analyzer is not scraped",
            "Prometheus has no successful scrape of job " + config.analyzer_job + ": no slice verdicts, "
            "burn rates or root-cause hints, so the burn-rate alerts cannot fire.",
            {f'up{{job="{config.analyzer_job}",instance="a:9863"}}': "0x20"},
            {f'up{{job="{config.analyzer_job}",instance="a:9863"}}': "1x20"},
            {},
        ),
        HealthAlert(
            "XnetAnalyzerBusLost",
            one_replica(f'xnet_analyzer_bus_connected{{job="{config.analyzer_job}"}}'),
            "== 0",
            "critical",
            "2m",
            "Analyzer {{ $labels.instance }} has lost the bus",
            "The analyzer at {{ $labels.instance }} has been without its nats-server for 2 minutes: it judges "
            "no new interval, so its verdicts and burn rates stand still while the agents spool their windows.",
            {bus: "0x20"},
            # Lost 75 s before the evaluation (a server restart, a leader moving): still pending.
            {bus: "1x10 0x9"},
            {"job": config.analyzer_job, "instance": "a:9863"},
        ),
        HealthAlert(
            "XnetAgentDown",
            one_replica(f'up{{job="{agent}"}}'),
            "== 0",
            "warning",
            "1m",
            "Agent {{ $labels.instance }} cannot be scraped",
            "Prometheus fails to scrape the xnetmon agent at {{ $labels.instance }}: the site is cut off, "
            "or the agent stopped.",
            {f'up{{job="{agent}",instance="a:9862"}}': "0x20"},
            {f'up{{job="{agent}",instance="a:9862"}}': "1x20"},
            {"job": agent, "instance": "a:9862"},
        ),
        HealthAlert(
            "XnetAgentSilent",
            "time() - max by (src) (xnet_collector_last_window_timestamp_seconds)",
            "> 60",
            "warning",
            "1m",
            "Agent {{ $labels.src }} stopped producing measurements",
            "The newest path window from site {{ $labels.src }} ended {{ $value | humanizeDuration }} ago.",
            {'xnet_collector_last_window_timestamp_seconds{src="cnty1a"}': "0x20"},
            {'xnet_collector_last_window_timestamp_seconds{src="cnty1a"}': "0+15x20"},
            {"src": "cnty1a"},
            "3m 0s",
        ),
        HealthAlert(
            "XnetCollectorSchedulingLag",
            'max by (src) (xnet_collector_scheduling_lag_seconds{quantile="0.99"})',
            "> 0.05",
            "warning",
            "5m",
            "Agent {{ $labels.src }} sends its probes late",
            "Probes from site {{ $labels.src }} leave {{ $value | humanizeDuration }} late (p99): the agent's "
            "host is overloaded, so its delay numbers are suspect.",
            {lag: "0.2x40"},
            {lag: "0.001x40"},
            {"src": "cnty1a"},
            "200ms",
        ),
        HealthAlert(
            "XnetCollectorSpoolGrowing",
            "max by (src) (deriv(xnet_collector_spool_windows[15m]))",
            "> 0 and on (src) max by (src) (xnet_collector_spool_windows) > 10",
            "warning",
            "15m",
            "Agent {{ $labels.src }} cannot ship its windows to the analyzer",
            "The spool of site {{ $labels.src }} keeps growing: the analyzer is unreachable or refuses "
            "the agent's shipments.",
            {spool: "0+1x160"},
            {spool: "5x160"},
            {"src": "cnty1a"},
        ),
        HealthAlert(
            "XnetCollectorTokenRefused",
            "sum by (src) ("
            + counter_rate('xnet_collector_ship_failures_total{reason="auth"}', "10m", "increase")
            + ")",
            "> 0",
            "warning",
            "5m",
            "The analyzer refuses the token of agent {{ $labels.src }}",
            "The analyzer answers 401/403 to site {{ $labels.src }}: its token file is missing or differs "
            "from the agent's. The windows wait in the agent's spool until the tokens agree.",
            {'xnet_collector_ship_failures_total{src="cnty1a",reason="auth"}': "0+1x40"},
            {'xnet_collector_ship_failures_total{src="cnty1a",reason="auth"}': "3x40"},
            {"src": "cnty1a"},
        ),
        HealthAlert(
            "XnetCollectorWindowsDropped",
            f"sum by (src) ({counter_rate('xnet_collector_windows_dropped_total', '10m', 'increase')})",
            "> 0",
            "warning",
            "0s",
            "Agent {{ $labels.src }} dropped path windows",
            "Site {{ $labels.src }} discarded windows because its spool was full: those measurements are gone.",
            {'xnet_collector_windows_dropped_total{src="cnty1a"}': "0+1x40"},
            {'xnet_collector_windows_dropped_total{src="cnty1a"}': "7x40"},
            {"src": "cnty1a"},
        ),
        HealthAlert(
            "XnetProbeSendErrors",
            f"sum by (src) ({counter_rate('xnet_collector_send_errors_total', '5m')})\n"
            f"/ sum by (src) ({counter_rate('xnet_collector_probes_sent_total', '5m')})",
            "> 0.01",
            "warning",
            "10m",
            "Agent {{ $labels.src }} fails to send probes",
            "The kernel refused {{ $value | humanizePercentage }} of the probes of site {{ $labels.src }} "
            "(no route, full buffers): its paths look lossy for a local reason.",
            {
                'xnet_collector_send_errors_total{src="cnty1a"}': "0+10x80",
                'xnet_collector_probes_sent_total{src="cnty1a"}': "0+100x80",
            },
            {
                'xnet_collector_send_errors_total{src="cnty1a"}': "0x80",
                'xnet_collector_probes_sent_total{src="cnty1a"}': "0+100x80",
            },
            {"src": "cnty1a"},
            "10%",
        ),
        HealthAlert(
            "XnetMalformedPackets",
            f"sum by (job, instance, protocol, kind) ({counter_rate('xnet_malformed_packets_total', '5m')})",
            "> 0.1",
            "info",
            "10m",
            "{{ $labels.instance }} receives malformed {{ $labels.protocol }} packets",
            "{{ $labels.instance }} drops undecodable {{ $labels.protocol }} packets ({{ $labels.kind }}): "
            "a misconfigured sender, another protocol on the port, or a scan.",
            {MALFORMED_STAMP_SERIES: "0+100x80"},
            {MALFORMED_STAMP_SERIES: "3x80"},
            {"job": "xnet-agent", "instance": "a:9862", "protocol": "stamp", "kind": "short"},
        ),
    ]
    return [_health_rule(config, spec) for spec in specs]


def _health_rule(config: MixinConfig, spec: HealthAlert) -> AlertRule:
    expr = f"{spec.signal} {spec.threshold}".strip()
    eval_time = _after(spec.for_) if spec.name != "XnetCollectorSpoolGrowing" else "35m"
    labels = {"severity": spec.severity, "scope": "collector", **spec.labels}
    cases = (
        Case(
            f"{spec.name}: fires",
            spec.bad,
            eval_time,
            (
                {
                    "exp_labels": labels,
                    "exp_annotations": {
                        "summary": spec.rendered(spec.summary),
                        "description": spec.rendered(spec.description),
                        "runbook_url": config.runbook_url(spec.name),
                    },
                },
            ),
        ),
        Case(f"{spec.name}: stays silent", spec.good, eval_time),
    )
    # absent() answers only when the analyzer is gone: its signal is the `up` series it watches.
    signal = spec.signal.removeprefix("absent(").removesuffix(" == 1)")
    return AlertRule(
        spec.name,
        expr,
        spec.severity,
        "collector",
        spec.summary,
        spec.description,
        signals=(signal,),
        for_=spec.for_,
        cases=cases,
    )


def alert_rules(config: MixinConfig) -> list[AlertRule]:
    return [
        slice_down(config),
        *burn_rate_alerts(config),
        node_down(config),
        *path_alerts(config),
        *segment_loss_alerts(config),
        path_changed(config),
        *health_alerts(config),
    ]


def alert_groups(config: MixinConfig) -> list[dict]:
    by_scope: dict[str, list[dict]] = {}
    for alert in alert_rules(config):
        by_scope.setdefault(alert.scope, []).append(alert.rule(config))
    return [{"name": f"xnet-{scope}.alerts", "rules": rules_} for scope, rules_ in by_scope.items()]
