"""Subjects carry the site; message ids name a body exactly."""

from __future__ import annotations

import pytest

from collector.bus.subjects import (
    STREAM_SUBJECTS,
    BadSubject,
    check_site,
    message_id,
    parse_subject,
    partition_filter,
    partition_mapping,
    site_subjects,
    subject,
)


def test_a_subject_names_kind_and_site_and_parses_back():
    assert subject("windows", "cnty1a") == "xnet.windows.cnty1a"
    assert parse_subject("xnet.health.cnty-2_b") == ("health", "cnty-2_b")
    assert site_subjects("cnty1a") == ("xnet.windows.cnty1a", "xnet.observations.cnty1a", "xnet.health.cnty1a")
    assert STREAM_SUBJECTS == ("xnet.windows.*", "xnet.observations.*", "xnet.health.*")


@pytest.mark.parametrize("site", ["", "a.b", "*", ">", "a b", "-lead", "x" * 65])
def test_a_site_that_is_no_single_token_is_refused(site):
    with pytest.raises(BadSubject, match="subject token"):
        check_site(site)


@pytest.mark.parametrize("name", ["xnet.windows", "xnet.bogus.a", "other.windows.a", "xnet.windows.a.b"])
def test_a_subject_outside_the_scheme_is_refused(name):
    with pytest.raises(BadSubject, match="not a bus subject"):
        parse_subject(name)


def test_an_unknown_kind_is_refused():
    with pytest.raises(BadSubject, match="unknown message kind"):
        subject("flows", "cnty1a")


def test_the_message_id_is_the_same_for_the_same_body_only():
    body = b'{"site":"cnty1a","windows":[]}'
    assert message_id("windows", "cnty1a", body) == message_id("windows", "cnty1a", bytes(body))
    assert message_id("windows", "cnty1a", body).startswith("cnty1a:windows:")
    assert message_id("windows", "cnty1a", body) != message_id("windows", "cnty1a", body + b" ")
    assert message_id("windows", "cnty1a", body) != message_id("health", "cnty1a", body)


def test_a_partitioned_subject_keeps_the_site_last():
    assert parse_subject("xnet.windows.3.cnty1a") == ("windows", "cnty1a")
    assert partition_mapping(4) == {"xnet.*.*": "xnet.{{wildcard(1)}}.{{partition(4,2)}}.{{wildcard(2)}}"}
    assert partition_filter(3) == "xnet.*.3.*"
    assert site_subjects("cnty1a", partitioned=True)[3:] == (
        "xnet.windows.*.cnty1a",
        "xnet.observations.*.cnty1a",
        "xnet.health.*.cnty1a",
    )
    for wrong in (0, 1025):
        with pytest.raises(BadSubject, match="partitions: from 1 to 1024"):
            partition_mapping(wrong)
