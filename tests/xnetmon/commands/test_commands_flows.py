"""`xnetmon flows` in-process: default sampling rates as given on the command line, the
per-slice table and its JSON line from a receiver fed real datagrams, and the mistakes it
refuses. (tests/xnetmon/test_flows_command.py runs `flows collect` against exporters.)"""

from __future__ import annotations

import json

import pytest

from collector.flow_export.receiver import FlowReceiver, ReceiverSettings
from tests.flow_export_support import V6_FIELDS, data_set, ipfix_message, ipfix_template_set, record, v6_values
from xnetmon.cli import UsageError, main
from xnetmon.commands.flows import parse_exporters, parse_sampling, print_table


def fed() -> FlowReceiver:
    receiver = FlowReceiver(ReceiverSettings(listen=[], default_sampling={"2001:db8::e": 10}))
    rows = [record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", dscp=34, octets=1000, packets=2))]
    receiver.handle_datagram(
        ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, rows)]), "2001:db8::e", 4739
    )
    receiver.handle_datagram(b"\x00\x0a", "2001:db8::e", 4739)
    return receiver


def test_default_sampling_rates_by_exporter_address():
    assert parse_sampling(["[2001:DB8::1]=100", "192.0.2.7=2.5"]) == {"2001:db8::1": 100.0, "192.0.2.7": 2.5}
    with pytest.raises(UsageError, match="expected EXPORTER_ADDRESS=N"):
        parse_sampling(["router1=10"])
    with pytest.raises(UsageError, match="N must be at least 1"):
        parse_sampling(["2001:db8::1=0.5"])


def test_the_table_lists_every_slice_with_scaled_counts_and_the_sampling_in_use(capsys):
    print_table(fed(), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["slice", "bytes", "packets", "flows"]
    assert lines[1].split() == ["video", "10000", "20", "1"]
    assert [line.split()[0] for line in lines[2:5]] == ["egov", "data", "best-effort"]
    assert lines[-1] == "2 datagrams, 1 malformed; sampling: 2001:db8::e 1:10"


def test_the_json_line_holds_the_same(capsys):
    print_table(fed(), as_json=True)
    line = json.loads(capsys.readouterr().out)
    assert line["slices"]["video"] == {"bytes": 10000, "packets": 20, "flows": 1}
    assert line["slices"]["egov"] == {"bytes": 0, "packets": 0, "flows": 0}
    assert (line["datagrams"], line["malformed"], line["sampling"]) == (2, 1, {"2001:db8::e": 10.0})


def test_without_a_sub_command_it_prints_its_help(capsys):
    assert main(["flows"]) == 2
    assert "collect" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--listen", "localhost:4739"], "xnetmon flows: --listen: "),
        (["--listen", "[::1]:0", "--metrics-listen", "nowhere"], "xnetmon flows: --metrics-listen: "),
        (["--listen", "[::1]:0", "--exporter", "2001:db8::1/48"], "xnetmon flows: --exporter: exporter prefix "),
    ],
)
def test_addresses_that_are_not_addresses_are_usage_errors(capsys, argv, message):
    assert main(["flows", "collect", *argv, "--duration", "0"]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_bad_rules_file_names_its_problem(tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{slice: video, dscp: 99}]\n")
    assert main(["flows", "collect", "--listen", "[::1]:0", "--slices", str(rules), "--duration", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xnetmon flows: --slices:\n") and "dscp" in err


def test_exporter_prefixes_become_the_allow_list_and_none_allows_any():
    assert parse_exporters(["2001:db8:ff::/48", "192.0.2.7"]) == ["2001:db8:ff::/48", "192.0.2.7/32"]
    assert parse_exporters(None) is None
