"""The template cache: persistence across a restart, expiry, withdrawal and the bounded
buffer of data waiting for its template."""

from __future__ import annotations

import json

from collector.flow_export.receiver import FlowReceiver, ReceiverSettings
from collector.flow_export.templates import MAX_STATE_FILE_BYTES, PENDING_BYTES_LIMIT, Template, TemplateCache
from tests.flow_export_support import V6_FIELDS, data_set, ipfix_message, ipfix_template_set, record, v6_values

KEY = ("2001:db8::e", 4739, 1, 256)
TEMPLATE = Template(256, ((27, 16, 0), (1, 8, 0), (9999, 4, 32473)))


def test_saved_templates_survive_a_restart(tmp_path):
    path = tmp_path / "templates.json"
    cache = TemplateCache(path)
    cache.learn(KEY, TEMPLATE, 1000.0)
    cache.snapshot(1000.0).write(path)
    assert not list(tmp_path.glob(".templates.json.*"))  # the temporary file was renamed
    again = TemplateCache(path)
    assert again.get(KEY, 1001.0) == TEMPLATE


def test_receiver_decodes_after_restart_without_the_template_again(tmp_path):
    settings = ReceiverSettings(listen=[], state_dir=tmp_path)
    first = FlowReceiver(settings)
    first.handle_datagram(ipfix_message([ipfix_template_set(256, V6_FIELDS)]), "2001:db8::e", 4739)
    first.stop()
    second = FlowReceiver(settings)
    rows = [record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", octets=42))]
    assert second.handle_datagram(ipfix_message([data_set(256, rows)]), "2001:db8::e", 4739) == 1
    assert second.counters.by_slice()["video"].bytes == 42


def test_damaged_file_is_ignored(tmp_path):
    path = tmp_path / "templates.json"
    path.write_text("{not json")
    assert len(TemplateCache(path)) == 0


def test_expiry_and_refresh():
    cache = TemplateCache(timeout_s=60)
    cache.learn(KEY, TEMPLATE, 0.0)
    cache.learn(KEY, TEMPLATE, 50.0)  # a refresh restarts the clock
    assert cache.get(KEY, 100.0) == TEMPLATE
    assert cache.expire(111.0) == 1 and cache.get(KEY, 111.0) is None


def test_withdraw_all_keeps_other_domains_and_options():
    cache = TemplateCache()
    options = Template(300, ((48, 2, 0), (34, 4, 0)), scope_count=1)
    cache.learn(KEY, TEMPLATE, 0.0)
    cache.learn(KEY[:3] + (300,), options, 0.0)
    cache.learn(("2001:db8::e", 4739, 2, 256), TEMPLATE, 0.0)
    assert cache.withdraw_all("2001:db8::e", 4739, 1, options=False) == 1
    assert cache.get(KEY[:3] + (300,), 0.0) == options
    assert cache.get(("2001:db8::e", 4739, 2, 256), 0.0) == TEMPLATE


def test_pending_buffer_is_bounded_and_counts_drops():
    cache = TemplateCache(pending_limit=3)
    for i in range(5):
        cache.park("ipfix", KEY, bytes([i]), None, float(i))
    assert cache.pending == 3 and cache.pending_dropped == {"ipfix": 2}
    claimed = cache.learn(KEY, TEMPLATE, 10.0)
    assert [p.data for p in claimed] == [b"\x02", b"\x03", b"\x04"]  # the newest three, in order


def test_file_format_is_json_with_the_key(tmp_path):
    path = tmp_path / "t.json"
    cache = TemplateCache(path)
    cache.learn(KEY, TEMPLATE, 5.0)
    cache.snapshot(5.0).write(path)
    (entry,) = json.loads(path.read_text())["templates"]
    assert (entry["exporter"], entry["port"], entry["domain"], entry["id"]) == KEY
    assert entry["fields"][2] == [9999, 4, 32473]


def test_parked_data_is_bounded_in_octets_as_well_as_in_sets():
    cache = TemplateCache(pending_limit=1024)
    for i in range(400):  # 400 sets of 64 KiB: 25 MiB if only the count bounded them
        cache.park("ipfix", KEY[:3] + (256 + i,), bytes(65_000), None, float(i))
    assert cache.pending * 65_000 <= PENDING_BYTES_LIMIT and cache.pending_dropped["ipfix"] == 400 - cache.pending
    claimed = cache.learn(KEY[:3] + (655,), TEMPLATE, 500.0)
    assert len(claimed) == 1 and cache.pending * 65_000 <= PENDING_BYTES_LIMIT


def test_a_saved_file_is_read_within_the_bounds(tmp_path):
    path = tmp_path / "templates.json"
    big = TemplateCache(path, max_templates=100, max_per_exporter=100)
    for i in range(50):
        big.learn(("2001:db8::e", 4739, 1, 256 + i), Template(256 + i, TEMPLATE.fields), 5.0)
    big.snapshot(5.0).write(path)
    small = TemplateCache(path, max_templates=10)
    assert len(small) == 10 and small.refused == {"template-total": 40}


def test_a_state_file_larger_than_any_we_write_is_not_read(tmp_path):
    path = tmp_path / "templates.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_STATE_FILE_BYTES + 1)
    assert len(TemplateCache(path)) == 0
