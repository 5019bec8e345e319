"""The slices xnetmon knows out of the box, and lookup by name.

These are the embedded default (the extranet xnetmon models): the same names, DSCPs
and slice IDs are used by the lab topologies, the demo monitor and the probe commands.
A site's configuration may define its own; this catalogue is what a bare command uses.
"""

from __future__ import annotations

from collector.contract.records import Slice

DEFAULT_SLICES: tuple[Slice, ...] = (
    Slice("video", dscp=34, slice_id=1),  # AF41: video conference
    Slice("egov", dscp=26, slice_id=2),  # AF31: e-government services
    Slice("data", dscp=18, slice_id=3),  # AF21: data exchange
    Slice("best-effort", dscp=0, slice_id=4),
)


class UnknownSliceError(KeyError):
    def __init__(self, name: str, known: tuple[Slice, ...]) -> None:
        names = ", ".join(s.name for s in known)
        super().__init__(f"unknown slice {name!r} (known slices: {names})")
        self.message = f"unknown slice {name!r} (known slices: {names})"

    def __str__(self) -> str:
        return self.message


def slice_by_name(name: str, slices: tuple[Slice, ...] = DEFAULT_SLICES) -> Slice:
    for candidate in slices:
        if candidate.name == name:
            return candidate
    raise UnknownSliceError(name, slices)
