"""The embedded slice catalogue and lookup by name."""

from __future__ import annotations

import pytest

from collector.contract.records import Slice
from collector.contract.slice_catalog import DEFAULT_SLICES, UnknownSliceError, slice_by_name


def test_the_default_slices_have_distinct_markings_and_ids():
    assert [s.name for s in DEFAULT_SLICES] == ["video", "egov", "data", "best-effort"]
    assert len({s.dscp for s in DEFAULT_SLICES}) == len({s.slice_id for s in DEFAULT_SLICES}) == 4
    assert slice_by_name("egov") == Slice("egov", 26, 2)


def test_an_unknown_slice_is_a_key_error_whose_message_lists_the_known_ones():
    with pytest.raises(KeyError) as caught:
        slice_by_name("vidoe")
    assert isinstance(caught.value, UnknownSliceError)
    assert str(caught.value) == "unknown slice 'vidoe' (known slices: video, egov, data, best-effort)"


def test_a_site_catalogue_replaces_the_default_one():
    own = (Slice("voice", 46),)
    assert slice_by_name("voice", own) is own[0]
    with pytest.raises(UnknownSliceError, match=r"known slices: voice\)"):
        slice_by_name("video", own)
