"""Hysteresis for SLA statuses: a change is reported only once it has held for a while.

Each interval yields a raw status (`ok`, `at-risk`, `breached`, or `no-data` for an
interval without probes). The reported status changes only after `hold` consecutive
intervals disagreed with it in the same direction:

- worse (ok -> at-risk -> breached): the new status is the mildest of that run, so
  at-risk, breached, at-risk reports at-risk, and a run must be all breached to report
  breached;
- better: the new status is the worst of the run (breached then ok, at-risk, ok reports
  at-risk);
- to no-data: `hold` intervals without probes; from no-data: `hold` intervals with probes,
  reporting the mildest of them.

An interval that agrees with the reported status ends any run, so a path flapping
between two statuses never changes what is reported. `since_ns` is the start of the
first interval of the run that made the reported status.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("ok", "at-risk", "breached", "no-data")
_SEVERITY = {"ok": 0, "at-risk": 1, "breached": 2}


@dataclass(slots=True)
class Hysteresis:
    hold: int
    status: str = "no-data"  # what is reported; a new tracker has seen nothing
    since_ns: int = 0  # 0: never had data
    run_kind: str = ""  # "worse" | "better" | "to-no-data" | "from-no-data"
    run_status: str = ""  # the status the run would report
    run_start_ns: int = 0
    run_count: int = 0

    def step(self, raw: str, start_ns: int) -> None:
        """One interval's raw status; `start_ns` is when the interval began."""
        if raw == self.status:
            self.run_count = 0
            return
        if raw == "no-data":
            kind = "to-no-data"
        elif self.status == "no-data":
            kind = "from-no-data"
        elif _SEVERITY[raw] > _SEVERITY[self.status]:
            kind = "worse"
        else:
            kind = "better"
        if self.run_count and kind == self.run_kind:
            self.run_count += 1
            if kind == "better":
                self.run_status = max(self.run_status, raw, key=_SEVERITY.__getitem__)
            elif kind != "to-no-data":
                self.run_status = min(self.run_status, raw, key=_SEVERITY.__getitem__)
        else:
            self.run_kind, self.run_status, self.run_start_ns, self.run_count = kind, raw, start_ns, 1
        if self.run_count >= self.hold:
            self.status, self.since_ns, self.run_count = self.run_status, self.run_start_ns, 0

    def copy(self) -> Hysteresis:
        return Hysteresis(
            self.hold, self.status, self.since_ns, self.run_kind, self.run_status, self.run_start_ns, self.run_count
        )

    def to_state(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "hold"}
