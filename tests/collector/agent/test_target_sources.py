"""One `targets` entry expanded on its own: the pairs it gives, in order, and its problems
keyed by the entry but not yet by the configuration file (the plan adds that)."""

from __future__ import annotations

from pathlib import Path

from collector.agent.config import AgentConfig, validate_config
from collector.agent.target_sources import MAX_PROBLEMS_PER_FILE, expand


def config_with(entry: dict, tmp_path: Path, max_targets: int = 100) -> AgentConfig:
    return validate_config(
        {"site": {"name": "a"}, "probing": {"max_targets": max_targets}, "targets": [entry]},
        source="agent.yaml",
        base_dir=tmp_path,
    )


def expanded(entry: dict, tmp_path: Path, room: int = 100, max_targets: int = 100):
    config = config_with(entry, tmp_path, max_targets)
    return expand(config, 0, config.targets[0], room)


def test_an_address_entry_is_its_own_pair_and_reads_no_file(tmp_path):
    found = expanded({"name": "core", "address": "FD00::1"}, tmp_path)
    assert (found.pairs, found.problems) == ([("core", "fd00::1")], [])


def test_a_text_file_keeps_its_order_and_writes_addresses_compressed(tmp_path):
    (tmp_path / "hosts").write_text("# site list\nz 2001:DB8:0:0::1  # the last site\n\na 192.0.2.1\n")
    found = expanded({"file": "hosts"}, tmp_path)
    assert (found.pairs, found.problems) == ([("z", "2001:db8::1"), ("a", "192.0.2.1")], [])


def test_a_file_keeps_its_good_lines_beside_the_problems_of_its_bad_ones(tmp_path):
    (tmp_path / "hosts.txt").write_text("ok ::1\njust-a-name\nbad 300.1.1.1\n")
    found = expanded({"file": "hosts.txt"}, tmp_path)
    assert found.pairs == [("ok", "::1")]
    assert found.problems == [
        f"targets[0].file: {tmp_path}/hosts.txt:2: expected \"NAME ADDRESS\", got 'just-a-name'",
        f"targets[0].file: {tmp_path}/hosts.txt:3: '300.1.1.1' is not an IP address",
    ]


def test_an_empty_yaml_file_gives_no_targets_and_no_problem(tmp_path):
    (tmp_path / "none.yml").write_text("# nothing yet\n")
    found = expanded({"file": "none.yml"}, tmp_path)
    assert (found.pairs, found.problems) == ([], [])


def test_a_yaml_file_reports_where_its_syntax_breaks(tmp_path):
    (tmp_path / "t.yaml").write_text("- {name: a, address: '::1'}\n- [unclosed\n")
    found = expanded({"file": "t.yaml"}, tmp_path)
    assert found.pairs == []
    [problem] = found.problems
    assert problem.startswith(f"targets[0].file: {tmp_path}/t.yaml:3:1: invalid YAML: ")


def test_a_file_with_many_bad_lines_shows_the_first_ones_and_a_count(tmp_path):
    (tmp_path / "junk").write_text("".join(f"line{n}\n" for n in range(MAX_PROBLEMS_PER_FILE + 5)))
    found = expanded({"file": "junk"}, tmp_path)
    assert len(found.problems) == MAX_PROBLEMS_PER_FILE + 1
    assert found.problems[0].endswith("junk:1: expected \"NAME ADDRESS\", got 'line0'")
    assert found.problems[-1] == f"targets[0].file: ... and 5 more problems in {tmp_path}/junk"


def test_a_cidr_names_by_offset_with_a_prefix_and_by_address_without(tmp_path):
    with_prefix = expanded({"cidr": "fd00::/127", "name_prefix": "h"}, tmp_path)
    assert with_prefix.pairs == [("h0", "fd00::"), ("h1", "fd00::1")]
    ipv4 = expanded({"cidr": "192.0.2.0/30", "count": 3}, tmp_path)
    assert ipv4.pairs == [("192.0.2.0",) * 2, ("192.0.2.1",) * 2, ("192.0.2.2",) * 2]


def test_a_cidr_fits_the_room_the_limit_leaves_or_says_what_took_the_rest(tmp_path):
    assert len(expanded({"cidr": "fd00::/124"}, tmp_path, room=16).pairs) == 16
    whole_limit = expanded({"cidr": "fd00::/124"}, tmp_path, room=10, max_targets=10)
    assert whole_limit.pairs == []
    assert whole_limit.problems == [
        "targets[0].cidr: fd00::/124 expands to 16 targets, more than "
        "probing.max_targets (10) allows; use a longer prefix, a count, "
        "or raise probing.max_targets"
    ]
    after_others = expanded({"cidr": "fd00::/124"}, tmp_path, room=15, max_targets=100)
    assert "more than probing.max_targets (100) allows after the 85 before it;" in after_others.problems[0]
