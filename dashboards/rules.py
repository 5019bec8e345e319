"""Recording rules: the loss ratios, RTT percentiles and top root-cause hint that the
alerts and the dashboards' summary panels read, and the in-situ segments' loss ratios.

Names follow Prometheus' `level:metric:operations` convention. Loss is derived from the
agents' counters (docs/architecture.md: ratios live in recording rules), summed before dividing so
that a ratio over many paths weighs each path by its probes. Windows: the fast one (three
scrapes, for the total-loss alert), 5m for per-path alerts and tables, 1h for trends.
"""

from __future__ import annotations

from dashboards.config import MixinConfig
from dashboards.promql import counter_rate

PERCENTILES = (0.5, 0.9, 0.99)
TOP_HINT = "slice:xnet_rootcause_hint:top"
LAST_WINDOW_AGE = "src:xnet_collector_last_window:age_seconds"


def path_loss(window: str) -> str:
    return f"slice_src_dst:xnet_probe_loss:ratio_rate{window}"


def slice_loss(window: str) -> str:
    return f"slice:xnet_probe_loss:ratio_rate{window}"


def slice_rtt(percentile: float) -> str:
    return f"slice:xnet_rtt_seconds:p{round(percentile * 100)}_rate5m"


PATH_RTT_P99 = "slice_src_dst:xnet_rtt_seconds:p99_rate5m"
SEGMENT_LOSS = "slice_segment_kind:xnet_segment_loss:ratio_rate5m"


def loss_ratio(by: str, window: str) -> str:
    # A probe is counted lost one timeout after it was counted sent, so over a short window
    # just after loss starts the ratio can pass 1: clamp it, a path cannot lose more than all.
    return (
        f"clamp_max(\n  sum by ({by}) ({counter_rate('xnet_probe_lost_total', window)})\n"
        f"  / sum by ({by}) ({counter_rate('xnet_probe_sent_total', window)}),\n  1\n)"
    )


def segment_loss_ratio(window: str) -> str:
    # Both counters move together, when a block is paired at both ends of the segment, so
    # unlike the probes' ratio this one cannot pass 1 and needs no clamp.
    by = "slice, segment, kind"
    return (
        f"sum by ({by}) ({counter_rate('xnet_segment_lost_packets_total', window)})\n"
        f"/ sum by ({by}) ({counter_rate('xnet_segment_packets_total', window)})"
    )


def rtt_quantile(percentile: float, by: str, window: str) -> str:
    return f"histogram_quantile({percentile:g}, sum by ({by}, le) ({counter_rate('xnet_rtt_seconds_bucket', window)}))"


def recording_groups(config: MixinConfig) -> list[dict]:
    fast = config.fast_window
    paths = [
        {"record": path_loss(fast), "expr": loss_ratio("slice, src, dst", fast)},
        {"record": path_loss("5m"), "expr": loss_ratio("slice, src, dst", "5m")},
        {"record": PATH_RTT_P99, "expr": rtt_quantile(0.99, "slice, src, dst", "5m")},
    ]
    slices = [{"record": slice_loss(w), "expr": loss_ratio("slice", w)} for w in dict.fromkeys((fast, "5m", "1h"))]
    slices.append(
        {
            "record": "slice_direction:xnet_probe_loss:ratio_rate5m",
            "expr": f"sum by (slice, direction) ({counter_rate('xnet_probe_lost_total', '5m')})\n"
            f"/ ignoring (direction) group_left sum by (slice) ({counter_rate('xnet_probe_sent_total', '5m')})",
        }
    )
    slices += [{"record": slice_rtt(p), "expr": rtt_quantile(p, "slice", "5m")} for p in PERCENTILES]
    # One hint per slice, the most confident, so an annotation can quote it in one line.
    slices.append(
        {"record": TOP_HINT, "expr": "topk by (slice) (1, max by (slice, kind, suspect) (xnet_rootcause_hint))"}
    )
    agents = [
        {"record": LAST_WINDOW_AGE, "expr": "time() - max by (src) (xnet_collector_last_window_timestamp_seconds)"}
    ]
    segments = [{"record": SEGMENT_LOSS, "expr": segment_loss_ratio("5m")}]
    return [
        {"name": "xnet-paths.rules", "rules": paths},
        {"name": "xnet-slices.rules", "rules": slices},
        {"name": "xnet-agents.rules", "rules": agents},
        {"name": "xnet-segments.rules", "rules": segments},
    ]
