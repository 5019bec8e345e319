"""What IPFIX and NetFlow v9 share once a message is cut into sets: template lookup, data
parked until its template, options records that set sampling and the uptime origin."""

from __future__ import annotations

import struct
from collections import Counter

from collector.flow_export import information_elements as ie
from collector.flow_export.datasets import TimeContext
from collector.flow_export.export_state import ExportState
from collector.flow_export.sampling import SamplingTable
from collector.flow_export.templates import Template, TemplateCache

EXPORTER = "2001:db8::e"
KEY = (EXPORTER, 4739, 1, 256)
OPTIONS_KEY = (EXPORTER, 4739, 1, 300)
NOW = 1_800_000_000.0
TIMES = TimeContext(1_800_000_000_000, None)
FLOWS = Template(256, ((ie.OCTET_DELTA_COUNT, 4, 0), (ie.FLOW_END_SYS_UP_TIME, 4, 0)))


def state(defaults: dict[str, float] | None = None) -> tuple[ExportState, Counter]:
    malformed: Counter = Counter()
    return ExportState(TemplateCache(), SamplingTable(defaults), lambda p, k: malformed.update([(p, k)])), malformed


def flows(*octets: int, uptime_ms: int = 5000) -> bytes:
    return b"".join(struct.pack("!II", n, uptime_ms) for n in octets)


def test_data_before_its_template_is_parked_and_decoded_when_the_template_comes():
    export, malformed = state({EXPORTER: 4})
    assert export.data_set("ipfix", KEY, flows(10, 20), TIMES, NOW) == []
    [decoded] = export.learn_template("ipfix", KEY, FLOWS, NOW + 1)
    assert (decoded.protocol, decoded.exporter, decoded.domain, decoded.rate) == ("ipfix", EXPORTER, 1, 4)
    assert decoded.columns.octets == [10, 20]
    assert export.data_set("ipfix", KEY, flows(30), TIMES, NOW + 2)[0].columns.octets == [30]
    assert not malformed


def test_parked_data_that_does_not_fit_its_template_is_counted_not_raised():
    export, malformed = state()
    variable = Template(256, ((ie.SRH_SEGMENT_IPV6_LIST_SECTION, 0xFFFF, 0),))
    export.data_set("netflow9", KEY, bytes([200]) + bytes(10), TIMES, NOW)
    assert export.learn_template("netflow9", KEY, variable, NOW) == []
    assert malformed == {("netflow9", "record-length"): 1}


def test_options_records_set_the_sampling_rate_and_the_uptime_origin():
    export, _ = state()
    options = Template(
        300,
        ((ie.SAMPLER_ID, 1, 0), (ie.SAMPLING_INTERVAL, 4, 0), (ie.SYSTEM_INIT_TIME_MILLISECONDS, 8, 0)),
        scope_count=1,
    )
    export.learn_template("ipfix", OPTIONS_KEY, options, NOW)
    assert export.data_set("ipfix", OPTIONS_KEY, struct.pack("!BIQ", 1, 50, 1_700_000_000_000), TIMES, NOW) == []
    export.learn_template("ipfix", KEY, FLOWS, NOW)
    [decoded] = export.data_set("ipfix", KEY, flows(10), TIMES, NOW)
    assert decoded.rate == 50 and decoded.rates is None
    assert decoded.columns.end_ms == [1_700_000_000_000 + 5000]  # uptime counted from the system's start


def test_records_that_carry_their_own_interval_get_one_rate_each():
    export, _ = state({EXPORTER: 8})
    template = Template(256, ((ie.OCTET_DELTA_COUNT, 4, 0), (ie.SAMPLING_INTERVAL, 4, 0)))
    export.learn_template("netflow9", KEY, template, NOW)
    [decoded] = export.data_set("netflow9", KEY, struct.pack("!IIII", 1, 100, 1, 0), TIMES, NOW)
    assert decoded.rates == [100.0, 8.0]  # 0: not said, the exporter's rate
    assert decoded.rate == 8.0


def test_an_empty_set_decodes_to_nothing():
    export, _ = state()
    export.learn_template("ipfix", KEY, FLOWS, NOW)
    assert export.data_set("ipfix", KEY, b"\x00\x00\x00", TIMES, NOW) == []  # padding only


def test_uptime_origins_are_kept_per_exporter_port_and_domain_and_bounded():
    export = ExportState(TemplateCache(), SamplingTable(limit=3), lambda p, k: None)
    init = Template(300, ((149, 4, 0), (ie.SYSTEM_INIT_TIME_MILLISECONDS, 8, 0)), scope_count=1)  # 149: domain id
    for port in range(4739, 4749):  # one exporter address, ten source ports: ten sources
        key = (EXPORTER, port, 1, 300)
        export.learn_template("ipfix", key, init, NOW)
        export.data_set("ipfix", key, struct.pack("!IQ", 1, 1_700_000_000_000 + port), TIMES, NOW)
    assert len(export.system_init_ms) == 3
    assert export.system_init_ms[(EXPORTER, 4739, 1)] == 1_700_000_000_000 + 4739
