"""The per-slice HTB trees as tc batch lines: one class per slice keyed on DSCP, shares of the
link rate, and the numbers faults change."""

from __future__ import annotations

from lab.qos import QUANTUM, EndSettings, base_settings, class_id, rebuild_lines, setup_lines
from lab.topology import load

TINY = load("tiny")
LINK = TINY.links[0]
SITE = LINK.a
DEVICE = LINK.interface(SITE)


def test_a_tree_has_the_link_rate_a_class_per_slice_and_a_filter_per_marked_slice():
    lines = setup_lines(TINY, LINK, SITE)
    rate = base_settings(LINK).rate_kbit
    assert rate == 100_000
    assert lines[0] == f"qdisc add dev {DEVICE} root handle 1: htb default 14"  # best-effort, id 4
    assert lines[1] == f"class add dev {DEVICE} parent 1: classid 1:1 htb rate {rate}kbit ceil {rate}kbit"
    video = TINY.slice("video")
    assert class_id(video) == "1:11"
    assert (
        f"class add dev {DEVICE} parent 1:1 classid 1:11 htb rate 30000kbit ceil {rate}kbit quantum {QUANTUM}" in lines
    )
    assert f"qdisc add dev {DEVICE} parent 1:11 handle 11: pfifo limit 1000" in lines
    filters = [line for line in lines if line.startswith("filter")]
    assert len(filters) == 3  # the DSCP-0 slice is the default class
    assert f"match ip6 priority 0x{video.tos:02x} 0xfc flowid 1:11" in filters[0]


def test_a_congested_end_cuts_the_rate_and_bounds_every_queue():
    lines = rebuild_lines(TINY, LINK, SITE, EndSettings(rate_kbit=10_000, queue_ms=50))
    assert lines[2].endswith("classid 1:1 htb rate 10000kbit ceil 10000kbit")
    # 50 ms at 10 Mbit/s is 62,500 bytes: 50 frames of the 1250-byte load
    assert f"qdisc add dev {DEVICE} parent 1:11 handle 11: pfifo limit 50" in lines


def test_a_change_is_a_new_tree_so_no_class_keeps_the_token_debt_of_its_old_rate():
    starved = EndSettings(rate_kbit=100_000, starved=(("egov", 64),))
    healed = rebuild_lines(TINY, LINK, SITE, base_settings(LINK))
    assert healed == [f"qdisc del dev {DEVICE} root", *setup_lines(TINY, LINK, SITE)]
    assert rebuild_lines(TINY, LINK, SITE, starved)[1:] == setup_lines(TINY, LINK, SITE, starved)
    assert not any(" change " in line or " replace " in line for line in healed)


def test_a_starved_slice_is_held_to_its_rate_while_the_others_may_borrow():
    settings = EndSettings(rate_kbit=100_000, starved=(("egov", 64),))
    lines = rebuild_lines(TINY, LINK, SITE, settings)
    egov, video = class_id(TINY.slice("egov")), class_id(TINY.slice("video"))
    assert any(f"classid {egov} htb rate 64kbit ceil 64kbit" in line for line in lines)
    assert any(f"classid {video} htb rate 30000kbit ceil 100000kbit" in line for line in lines)
    assert settings.starved_rate("egov") == 64 and settings.starved_rate("video") is None
