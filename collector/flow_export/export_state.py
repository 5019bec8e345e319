"""What IPFIX and NetFlow v9 have in common once a message is cut into sets: template
lookup, parking data that came before its template, options records feeding the sampling
table, and decoding data sets into flow columns with the sampling rate that applies.

`ipfix.py` and `netflow9.py` parse their own headers and template records and call
`learn_template` and `data_set` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from collector.flow_export import information_elements as ie
from collector.flow_export.datasets import (
    FlowColumns,
    MalformedSet,
    TimeContext,
    decode_columns,
    decode_element_records,
)
from collector.flow_export.sampling import SamplingTable
from collector.flow_export.templates import SourceKey, Template, TemplateCache, TemplateKey


class MalformedMessage(MalformedSet):
    """A datagram that cannot be decoded; `kind` is the label of xnet_malformed_packets_total."""


@dataclass(frozen=True, slots=True)
class DecodedFlows:
    """The flow records of one data set, with the sampling that applies to them."""

    protocol: str  # "ipfix" | "netflow9" | "sflow"
    exporter: str
    domain: int
    columns: FlowColumns
    rate: float  # 1 in N, for every record unless `rates` is given
    rates: list[float] | None = None  # per record, when records name samplers or carry IE 34


class ExportState:
    """Templates and sampling of every exporter, and the decoding that needs them."""

    def __init__(
        self, templates: TemplateCache, sampling: SamplingTable, count_malformed: Callable[[str, str], None]
    ) -> None:
        self.templates = templates
        self.sampling = sampling
        self._count_malformed = count_malformed
        # (exporter, port, domain) -> systemInitTimeMilliseconds from options: the origin of
        # IPFIX flowStart/EndSysUpTime (softflowd times its IPFIX flows that way); keyed and
        # bounded like the sampling rates, which come in the same options records
        self.system_init_ms: dict[SourceKey, int] = {}

    def learn_template(self, protocol: str, key: TemplateKey, template: Template, now: float) -> list[DecodedFlows]:
        """Store a template; decode the data that was waiting for it."""
        decoded: list[DecodedFlows] = []
        for parked in self.templates.learn(key, template, now):
            try:
                decoded.extend(self._decode(protocol, key, template, parked.data, parked.context))
            except MalformedSet as exc:
                self._count_malformed(protocol, exc.kind)
        return decoded

    def data_set(
        self, protocol: str, key: TemplateKey, data: bytes | memoryview, times: TimeContext, now: float
    ) -> list[DecodedFlows]:
        template = self.templates.get(key, now)
        if template is None:
            self.templates.park(protocol, key, data, times, now)
            return []
        return self._decode(protocol, key, template, data, times)

    def _decode(
        self, protocol: str, key: TemplateKey, template: Template, data: bytes | memoryview, times: TimeContext
    ) -> list[DecodedFlows]:
        exporter, port, domain, _ = key
        source = (exporter, port, domain)
        if template.is_options:
            for record in decode_element_records(template, data):
                self.sampling.learn(source, record)
                init_ms = record.get(ie.SYSTEM_INIT_TIME_MILLISECONDS)
                if isinstance(init_ms, int) and (
                    source in self.system_init_ms or len(self.system_init_ms) < self.sampling.limit
                ):
                    self.system_init_ms[source] = init_ms
            return []
        if times.sysuptime_base_ms is None and source in self.system_init_ms:
            times = replace(times, sysuptime_base_ms=self.system_init_ms[source])
        columns = decode_columns(template, data, times)
        if not len(columns):
            return []
        rates = None
        if columns.sampling_interval is not None:
            rates = [float(n) if n else self.sampling.rate(source) for n in columns.sampling_interval]
            self.sampling.note_rate(exporter, rates[-1])
        elif columns.sampler is not None:
            rates = [self.sampling.rate(source, s) for s in columns.sampler]
        rate = rates[-1] if rates else self.sampling.rate(source)
        return [DecodedFlows(protocol, exporter, domain, columns, rate, rates)]
