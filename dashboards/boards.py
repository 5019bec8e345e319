"""The five dashboards: extranet overview, slice detail, path detail, flows, collector health.

Panels query the raw series with `$__rate_interval` (so they follow the zoom) and the
dashboard variables; recording rules serve the alerts. The Flows dashboard is drawn on the
flow engine's metric names (xnet_flow_*, xnet_passive_rtt_seconds, xnet_tcp_retransmissions_total,
xnet_altmark_*), which appear once flows are received.
"""

from __future__ import annotations

from dashboards.grafana import (
    JOB,
    PATH,
    SITE,
    SLICE,
    Panel,
    Query,
    Row,
    dashboard,
    loss_by_direction,
    loss_ratio,
    percentiles,
    rate,
    rtt_quantile,
    segment_loss_ratio,
    summed,
)

STATE_CODE = (
    f'max by (slice) (xnet_slice_state{{{SLICE}, state="at-risk"}})'
    f' + 2 * max by (slice) (xnet_slice_state{{{SLICE}, state="breached"}})'
    f' + 3 * max by (slice) (xnet_slice_state{{{SLICE}, state="no-data"}})'
)
STATE_MAPPINGS = {
    "mappings": [
        {
            "type": "value",
            "options": {
                "0": {"text": "ok", "color": "green", "index": 0},
                "1": {"text": "at-risk", "color": "yellow", "index": 1},
                "2": {"text": "breached", "color": "red", "index": 2},
                "3": {"text": "no-data", "color": "gray", "index": 3},
            },
        }
    ]
}
TABLE = {"showHeader": True}


def _rename(mapping: dict[str, str]) -> dict:
    return {"id": "organize", "options": {"renameByName": mapping, "excludeByName": {"Time": True}}}


def overview() -> dict:
    site_health = (
        f'max by (id) (label_replace({loss_ratio("src", PATH)}, "id", "$1", "src", "(.*)")'
        f'\nor label_replace({loss_ratio("dst", PATH)}, "id", "$1", "dst", "(.*)"))'
    )
    path_health = (
        f'label_join(label_replace(label_replace({loss_ratio("src, dst", PATH)}, "source", "$1", '
        f'"src", "(.*)"), "target", "$1", "dst", "(.*)"), "id", ">", "src", "dst")'
    )
    panels = [
        Panel(
            "Slice state",
            "Each slice's SLA state as the analyzer judges it (ok, at-risk, breached, no-data), over time.",
            "none",
            (Query(STATE_CODE, "{{slice}}"),),
            type="state-timeline",
            width=12,
            field_config=STATE_MAPPINGS,
        ),
        Panel(
            "Error budget remaining",
            "Share of each slice's error budget left in its compliance window "
            "(30 days by default): 100% untouched, 0% spent.",
            "percentunit",
            (Query(f"min by (slice) (xnet_slice_error_budget_remaining_ratio{{{SLICE}}})", "{{slice}}", instant=True),),
            type="bargauge",
            width=12,
            field_config={"min": 0, "max": 1},
        ),
        Panel(
            "Burn rates",
            "How fast each slice spends its error budget over each burn window (1 = on budget; "
            "the page thresholds are 14.4 and 6).",
            "none",
            (Query(f"max by (slice, window) (xnet_slice_burn_rate{{{SLICE}}})", "{{slice}} {{window}}"),),
        ),
        Panel(
            "Active root-cause hints",
            "What the root-cause engine blames now, per slice: kind (link-loss, "
            "node-down, congestion...), the suspect link or node, and its confidence.",
            "percentunit",
            # One row per hint, however many analyzer replicas (and Prometheus replicas) report it.
            (
                Query(
                    f"max by (slice, kind, suspect) (xnet_rootcause_hint{{{SLICE}}}) > 0", instant=True, format="table"
                ),
            ),
            type="table",
            options=TABLE,
        ),
        Panel(
            "Worst paths by loss",
            "The ten paths losing the largest share of their probes now.",
            "percentunit",
            (Query(f"topk(10, {loss_ratio('slice, src, dst', PATH)})", instant=True, format="table"),),
            type="table",
            options=TABLE,
        ),
        Panel(
            "Worst paths by p99 RTT",
            "The ten paths with the highest 99th-percentile round-trip time now.",
            "s",
            (Query(f"topk(10, {rtt_quantile(0.99, 'slice, src, dst', PATH)})", instant=True, format="table"),),
            type="table",
            options=TABLE,
        ),
        Panel(
            "Sites and probed paths",
            "Sites as nodes and probed paths as edges, each coloured by the share of "
            "probes lost (main stat). Nodes show the loss of the paths that start or end there.",
            "percentunit",
            (Query(site_health, instant=True, format="table"), Query(path_health, instant=True, format="table")),
            type="nodeGraph",
            width=24,
            transformations=(_rename({"Value #A": "mainstat", "Value #B": "mainstat"}),),
        ),
    ]
    return dashboard(
        "xnet-overview",
        "xnetmon / Extranet overview",
        "Every slice's SLA state and error budget, the worst paths, root-cause hints and a map of sites.",
        panels,
        tags=("overview",),
    )


def slice_detail() -> dict:
    panels: list[Panel | Row] = [
        Panel(
            "Round-trip time percentiles",
            "p50, p90 and p99 of the probes' round-trip time per slice, from the RTT histograms of all selected paths.",
            "s",
            percentiles("slice", PATH, "{{slice}}"),
        ),
        Panel(
            "Loss by direction",
            "Share of probes lost per slice, split into forward (the reflector never saw "
            "the request), reverse (the reply was lost) and unknown.",
            "percentunit",
            (Query(loss_by_direction("slice", PATH), "{{slice}} {{direction}}"),),
        ),
        Panel(
            "Delay variation",
            "Worst path's delay variation per slice: ipdv (RFC 3393, mean absolute "
            "difference of consecutive probes) and pdv_p99 (RFC 5481).",
            "s",
            (Query(f"max by (slice, type) (xnet_delay_variation_seconds{{{PATH}}})", "{{slice}} {{type}}"),),
        ),
        Panel(
            "Delay objectives against their bounds",
            "Observed delay percentiles (latest interval) beside the bound of each delay objective of the slice's SLA.",
            "s",
            (
                Query(
                    f'max by (slice, objective) (xnet_slice_sla_objective_observed{{{SLICE}, objective=~".*delay.*"}})',
                    "{{slice}} {{objective}} observed",
                ),
                Query(
                    f'max by (slice, objective) (xnet_slice_sla_objective_bound{{{SLICE}, objective=~".*delay.*"}})',
                    "{{slice}} {{objective}} bound",
                ),
            ),
        ),
        Panel(
            "Loss and availability against their bounds",
            "Observed loss ratio and available share (latest interval) beside each objective's bound.",
            "percentunit",
            (
                Query(
                    f"max by (slice, objective) (xnet_slice_sla_objective_observed{{{SLICE}, "
                    f'objective=~"two-way-packet-loss|availability"}})',
                    "{{slice}} {{objective}} observed",
                ),
                Query(
                    f"max by (slice, objective) (xnet_slice_sla_objective_bound{{{SLICE}, "
                    f'objective=~"two-way-packet-loss|availability"}})',
                    "{{slice}} {{objective}} bound",
                ),
            ),
        ),
        Panel(
            "Objectives met",
            "1 when the slice met the objective in its latest interval, 0 when it did not.",
            "bool",
            (Query(f"min by (slice, objective) (xnet_slice_sla_objective_met{{{SLICE}}})", "{{slice}} {{objective}}"),),
            type="state-timeline",
        ),
        Panel(
            "Burn rates",
            "Error budget burn rate per slice and lookback; 1 spends the budget exactly over the compliance window.",
            "none",
            (Query(f"max by (slice, window) (xnet_slice_burn_rate{{{SLICE}}})", "{{slice}} {{window}}"),),
        ),
        Panel(
            "Error budget remaining",
            "Share of the slice's error budget still unspent.",
            "percentunit",
            (Query(f"min by (slice) (xnet_slice_error_budget_remaining_ratio{{{SLICE}}})", "{{slice}}"),),
        ),
        Panel(
            "Loss by source site",
            "Share of probes lost per slice and source site: a site whose every path loses is the suspect.",
            "percentunit",
            (Query(loss_ratio("slice, src", PATH), instant=True, format="table"),),
            type="table",
            options=TABLE,
        ),
        Panel(
            "p99 RTT by source site",
            "99th-percentile round-trip time per slice and source site.",
            "s",
            (Query(rtt_quantile(0.99, "slice, src", PATH), instant=True, format="table"),),
            type="table",
            options=TABLE,
        ),
        *segment_row(),
    ]
    return dashboard(
        "xnet-slice",
        "xnetmon / Slice detail",
        "Latency, loss, jitter and each SLA objective of the selected slices, with burn rates, a "
        "per-site breakdown and, per slice, loss and delay of each in-situ segment along the path.",
        panels,
        tags=("slice",),
    )


def segment_row() -> list[Panel | Row]:
    """One row per selected slice (Grafana repeats it, $slice set to that slice alone): loss
    and one-way delay of each segment between two counting points of the slice's marked
    flows, from in-situ flow telemetry (xnet_segment_*), with the end-to-end figure beside."""
    legend = "{{segment}} ({{kind}})"
    return [
        Row("In-situ segments: $slice", repeat="slice"),
        Panel(
            "Segment loss along the path",
            "Share of the slice's marked packets lost on each segment between two counting points "
            "(a link a>b, the node at a site, a span over a site that counts nothing) and end to end: "
            "upstream count minus downstream count of the same blocks (RFC 9341 alternate marking). "
            "A link's segment losing alone is that link, without tomography.",
            "percentunit",
            (Query(segment_loss_ratio("segment, kind", SLICE), legend),),
        ),
        Panel(
            "Segment one-way delay along the path",
            "One-way delay across each segment of the latest block's D-marked packets, and end to end "
            "(both counting points' clock errors included; exact in the lab, one clock).",
            "s",
            (Query(f"max by (segment, kind) (xnet_segment_delay_seconds{{{SLICE}}})", legend),),
        ),
    ]


def path_detail() -> dict:
    def per_second(metric: str, legend: str) -> Query:
        return summed(metric, "slice, src, dst", PATH, f"{{{{src}}}}→{{{{dst}}}} {legend}")

    panels = [
        Panel(
            "RTT heatmap",
            "Distribution of the path's round-trip times over time, from the RTT histogram "
            "buckets (which include every SLA delay bound).",
            "s",
            (summed("xnet_rtt_seconds_bucket", "le", PATH, "{{le}}", format="heatmap"),),
            type="heatmap",
            width=24,
            options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        ),
        Panel(
            "Round-trip time percentiles",
            "p50, p90 and p99 of the path's round-trip time.",
            "s",
            percentiles("slice, src, dst", PATH, "{{src}}→{{dst}}"),
        ),
        Panel(
            "Loss by direction",
            "Share of the path's probes lost forward, in reverse, or in an unknown direction.",
            "percentunit",
            (Query(loss_by_direction("slice, src, dst", PATH), "{{src}}→{{dst}} {{direction}}"),),
        ),
        Panel(
            "Hop lists seen",
            "Number of different traced hop lists (path fingerprints) in the time range: "
            "more than one means the path changed.",
            "none",
            (
                Query(
                    # Distinct fingerprints: not one per probe kind, analyzer or Prometheus replica.
                    "count by (slice, src, dst) (count by (slice, src, dst, fingerprint) "
                    f'(count_over_time(xnet_path_info{{{PATH}, fingerprint!=""}}[$__range])))',
                    "{{src}}→{{dst}}",
                    instant=True,
                ),
            ),
            type="stat",
        ),
        Panel(
            "Path fingerprint and address",
            "The target's address and the latest traced hop list's fingerprint; a new row means a new path.",
            "none",
            (
                Query(
                    f"max by (slice, src, dst, address, fingerprint) (xnet_path_info{{{PATH}}})",
                    instant=True,
                    format="table",
                ),
            ),
            type="table",
            options=TABLE,
        ),
        Panel(
            "Delay variation",
            "The path's delay variation in its latest window (ipdv, pdv_p99).",
            "s",
            (
                Query(
                    f"max by (slice, src, dst, type) (xnet_delay_variation_seconds{{{PATH}}})",
                    "{{src}}→{{dst}} {{type}}",
                ),
            ),
        ),
        Panel(
            "Raw probe counters",
            "Probes sent and received, duplicate and reordered replies per second.",
            "pps",
            (
                per_second("xnet_probe_sent_total", "sent"),
                per_second("xnet_probe_received_total", "received"),
                per_second("xnet_probe_duplicates_total", "duplicates"),
                per_second("xnet_probe_reordered_total", "reordered"),
            ),
        ),
    ]
    return dashboard(
        "xnet-path",
        "xnetmon / Path detail",
        "One path (source site, target, slice): RTT heatmap, loss, hop list changes and raw counters.",
        panels,
        single_path=True,
        tags=("path",),
    )


def flows() -> dict:
    flow = f'{JOB}, slice=~"$slice"'
    panels = [
        Panel(
            "Traffic per slice",
            "Bits per second carried by each slice, from the flow records (scaled by the sampling rate), by direction.",
            "bps",
            (
                Query(
                    f"8 * sum by (slice, direction) ({rate('xnet_flow_bytes_total', flow)})", "{{slice}} {{direction}}"
                ),
            ),
        ),
        Panel(
            "Packets per slice",
            "Packets per second carried by each slice, from the flow records.",
            "pps",
            (summed("xnet_flow_packets_total", "slice, direction", flow, "{{slice}} {{direction}}"),),
        ),
        Panel(
            "Top talkers",
            "The ten exporters (routers) sending the most traffic in the selected slices.",
            "bps",
            (
                Query(
                    f"topk(10, 8 * sum by (exporter) ({rate('xnet_flow_bytes_total', flow)}))",
                    instant=True,
                    format="table",
                ),
            ),
            type="table",
            options=TABLE,
        ),
        Panel(
            "Passive RTT",
            "p50 and p99 of TCP round-trip times measured passively from sampled traffic.",
            "s",
            tuple(
                Query(
                    f"histogram_quantile({q:g}, sum by (slice, le) ({rate('xnet_passive_rtt_seconds_bucket', flow)}))",
                    f"{{{{slice}}}} p{round(q * 100)}",
                )
                for q in (0.5, 0.99)
            ),
        ),
        Panel(
            "TCP retransmissions",
            "Retransmitted TCP segments per second seen in sampled traffic.",
            "pps",
            (summed("xnet_tcp_retransmissions_total", "slice", flow, "{{slice}}"),),
        ),
        Panel(
            "Flow records received",
            "Flow records per second by exporter.",
            "ops",
            (summed("xnet_flow_records_total", "exporter", flow, "{{exporter}}"),),
        ),
        Panel(
            "Export datagrams",
            "IPFIX, NetFlow v9 and sFlow datagrams per second by exporter.",
            "ops",
            (summed("xnet_flow_datagrams_total", "exporter, protocol", JOB, "{{exporter}} {{protocol}}"),),
        ),
        Panel(
            "Sampling rate and templates",
            "Each exporter's sampling rate (1 in N) and how many templates it has announced.",
            "none",
            (
                Query(f"max by (exporter) (xnet_flow_sampling_rate{{{JOB}}})", "{{exporter}} 1 in N"),
                Query(f"max by (exporter) (xnet_flow_templates{{{JOB}}})", "{{exporter}} templates"),
            ),
        ),
        Panel(
            "Alternate-marking loss",
            "Packets lost per second per measured segment, from RFC 9341 alternate-marking block counters.",
            "pps",
            (summed("xnet_altmark_block_loss_packets_total", "segment", JOB, "{{segment}}"),),
        ),
        Panel(
            "Alternate-marking packets",
            "Marked packets counted per point and colour.",
            "pps",
            (summed("xnet_altmark_packets_total", "point, colour", JOB, "{{point}} {{colour}}"),),
        ),
    ]
    return dashboard(
        "xnet-flows",
        "xnetmon / Flows",
        "Per-slice traffic from IPFIX/NetFlow/sFlow, top talkers, passive RTT and alternate marking.",
        panels,
        tags=("flows",),
    )


def collector_health() -> dict:
    def by_site(metric: str, legend: str = "{{src}}") -> Query:
        return summed(metric, "src", SITE, legend)

    panels = [
        Panel(
            "Scheduling lag",
            "How late probes left compared with their schedule (p99 and maximum per site): "
            "high values mean the agent, not the network, is slow.",
            "s",
            (
                Query(
                    f"max by (src, quantile) (xnet_collector_scheduling_lag_seconds{{{SITE}}})", "{{src}} q{{quantile}}"
                ),
            ),
        ),
        Panel(
            "Newest window age",
            "Seconds since each site's newest path window ended: growth means the agent stopped measuring.",
            "s",
            (Query(f"time() - max by (src) (xnet_collector_last_window_timestamp_seconds{{{SITE}}})", "{{src}}"),),
        ),
        Panel(
            "Send and receive errors",
            "Probe sends the kernel refused, errors reading replies, and datagrams "
            "dropped by full sockets, per second.",
            "ops",
            (
                by_site("xnet_collector_send_errors_total", "{{src}} send"),
                by_site("xnet_collector_receive_errors_total", "{{src}} receive"),
                by_site("xnet_collector_socket_drops_total", "{{src}} socket drops"),
            ),
        ),
        Panel(
            "Spool depth",
            "Path windows waiting to be shipped to the analyzer, per site.",
            "none",
            (Query(f"max by (src) (xnet_collector_spool_windows{{{SITE}}})", "{{src}}"),),
        ),
        Panel(
            "Windows dropped",
            "Path windows, and in-situ blocks, discarded per second because the spool was full.",
            "ops",
            (
                by_site("xnet_collector_windows_dropped_total"),
                by_site("xnet_collector_marked_blocks_dropped_total", "{{src}} in-situ blocks"),
            ),
        ),
        Panel(
            "Malformed packets",
            "Packets dropped as undecodable, per second, by protocol and what was wrong.",
            "pps",
            (
                summed(
                    "xnet_malformed_packets_total",
                    "instance, protocol, kind",
                    JOB,
                    "{{instance}} {{protocol}} {{kind}}",
                ),
            ),
        ),
        Panel(
            "Probes sent",
            "Probe packets each agent sends per second, and its probe schedules.",
            "pps",
            (by_site("xnet_collector_probes_sent_total"),),
        ),
        Panel(
            "Probe schedules",
            "Probe schedules running per site: one per (target, slice, probe kind).",
            "none",
            (Query(f"max by (src) (xnet_collector_sessions{{{SITE}}})", "{{src}}"),),
        ),
        Panel(
            "Agent CPU",
            "Share of one CPU each agent uses.",
            "percentunit",
            (by_site("xnet_collector_cpu_seconds_total"),),
        ),
        Panel(
            "Reflector packets",
            "STAMP requests each reflector handled per second, by result.",
            "pps",
            (summed("xnet_reflector_packets_total", "instance, result", JOB, "{{instance}} {{result}}"),),
        ),
        Panel(
            "Analyzer intake",
            "Path windows each analyzer accepted, ignored as duplicates, and shipments it refused, per second "
            "(replicas each judge every window: their intakes are shown side by side, not added).",
            "ops",
            (
                summed("xnet_analyzer_windows_ingested_total", "instance", JOB, "{{instance}} ingested"),
                summed("xnet_analyzer_windows_duplicate_total", "instance", JOB, "{{instance}} duplicates"),
                summed("xnet_analyzer_batches_rejected_total", "instance", JOB, "{{instance}} rejected batches"),
            ),
        ),
        Panel(
            "Analyzer bus connection",
            "1 while each analyzer's bus intake is connected to nats-server, 0 while it is cut off (its "
            "verdicts then stand still and the agents spool); and how often it lost the server.",
            "none",
            (
                Query(f"max by (instance) (xnet_analyzer_bus_connected{{{JOB}}})", "{{instance}} connected"),
                summed("xnet_analyzer_bus_disconnections_total", "instance", JOB, "{{instance}} losses/s"),
            ),
        ),
        Panel(
            "Versions",
            "The xnetmon and Python versions each scraped process runs.",
            "none",
            (Query(f"max by (instance, version, python) (xnet_build_info{{{JOB}}})", instant=True, format="table"),),
            type="table",
            options=TABLE,
        ),
    ]
    return dashboard(
        "xnet-collector",
        "xnetmon / Collector health",
        "The agents' and analyzer's own health: scheduling lag, errors, spool, malformed packets.",
        panels,
        tags=("collector",),
    )


def all_dashboards() -> list[dict]:
    return [overview(), slice_detail(), path_detail(), flows(), collector_health()]


def provisioning() -> dict:
    """A Grafana dashboard provider for /etc/grafana/provisioning/dashboards/ (see README)."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "xnetmon",
                "folder": "xnetmon",
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": "/var/lib/grafana/dashboards/xnetmon", "foldersFromFilesStructure": False},
            }
        ],
    }
