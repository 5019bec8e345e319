"""Saving the receiver's templates and rates: a save that fails is counted and retried while
the receiver goes on receiving, and no save holds the receiver's lock while it writes."""

from __future__ import annotations

import json
import shutil
import threading
import time

from collector.flow_export.receiver import FlowReceiver, ReceiverSettings
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    ipfix_message,
    ipfix_template_set,
    record,
    send_from,
    v6_values,
)
from tests.support import free_udp_port, wait_until

ROW = record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", octets=1000, packets=2))
LISTEN = [("127.0.0.1", 0)]


def saved_templates(path) -> int:
    return len(json.loads(path.read_text())["templates"]) if path.exists() else 0


def test_a_failed_save_is_counted_the_receiver_keeps_receiving_and_the_save_comes_later(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with FlowReceiver(ReceiverSettings(listen=LISTEN, state_dir=state)) as receiver:
        [address] = receiver.addresses
        exporter = ("127.0.0.1", free_udp_port("127.0.0.1"))
        state.rename(tmp_path / "gone")
        state.write_text("a file where the directory was")  # every write into it fails, root or not
        send_from(receiver, address, [(exporter, ipfix_message([ipfix_template_set(256, V6_FIELDS)]))])
        wait_until(lambda: receiver.errors["state-save"] >= 1, what="the failed save counted")
        assert receiver.saver._thread is not None and receiver.saver._thread.is_alive()
        send_from(receiver, address, [(exporter, ipfix_message([data_set(256, [ROW])]))] * 5)
        assert receiver.counters.by_slice()["video"].bytes == 5000  # received and counted all along
        state.unlink()
        (tmp_path / "gone").rename(state)  # the disk is back: the next round saves what was missed
        wait_until(lambda: saved_templates(state / "templates.json") == 1, what="the templates saved after all")
    assert receiver.errors["state-save"] >= 1 and not receiver.errors["receive"]


def test_a_save_that_fails_at_stop_is_counted_not_raised(tmp_path):
    state = tmp_path / "state"
    receiver = FlowReceiver(ReceiverSettings(listen=[], state_dir=state))
    receiver.handle_datagram(ipfix_message([ipfix_template_set(256, V6_FIELDS)]), "2001:db8::e", 4739)
    shutil.rmtree(state)  # made (and held) by the receiver as it started
    state.write_text("not a directory")
    receiver.stop()
    assert receiver.errors["state-save"] == 2  # templates and rates, each counted


def test_a_save_does_not_hold_the_receiver_s_lock_while_it_writes(tmp_path):
    """3,000 templates of 100 fields, sent over UDP, make a save of several MiB; a reader
    taking the lock in a loop meanwhile never waits more than a small part of the save."""
    layout = [(1000 + i, 4) for i in range(100)]
    settings = ReceiverSettings(
        listen=LISTEN, state_dir=tmp_path, max_templates=10_000, max_templates_per_exporter=10_000
    )
    with FlowReceiver(settings) as receiver:
        [address] = receiver.addresses
        messages = [
            ipfix_message([ipfix_template_set(t, layout) for t in range(first, first + 25)])
            for first in range(256, 256 + 3000, 25)
        ]
        send_from(receiver, address, [(("127.0.0.1", 0), m) for m in messages])
        assert len(receiver.state.templates) == 3000
        waits: list[float] = []
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                started = time.perf_counter()
                with receiver.reading():
                    waits.append(time.perf_counter() - started)
                time.sleep(0.001)

        thread = threading.Thread(target=reader)
        thread.start()
        started = time.perf_counter()
        assert receiver.saver.save(force=True)
        took = time.perf_counter() - started
        done.set()
        thread.join()
    assert saved_templates(tmp_path / "templates.json") == 3000
    assert took > 0.05 and len(waits) > 10, f"the save took {took:.3f} s, {len(waits)} reads: nothing measured"
    assert max(waits) < took / 4, f"a reader waited {max(waits):.3f} s of a {took:.3f} s save"


def test_a_receiver_without_a_state_directory_starts_no_saver():
    with FlowReceiver(ReceiverSettings(listen=LISTEN)) as receiver:
        assert receiver.saver._thread is None and not receiver.saver.persistent
