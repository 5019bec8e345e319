"""SLA policies: what each slice promises, built in code or read from a YAML file.

Objectives are named as in the IETF network-slice service model
(`two-way-delay-percentile`, `one-way-delay-percentile`,
`two-way-delay-variation-percentile`, `two-way-packet-loss`, `availability`). Delay bounds
are in seconds and must be bounds of `collector.contract.records.RTT_BUCKETS_S`: a two-way verdict
then reads bucket counts, never an estimate, and the exported histograms can draw every
bound. Windows carry the 99th percentile of one-way delay and of delay variation only, so
those two objectives take `percentile: 99`.

The file (see `analyzer/policies.yaml`, the defaults below) maps slice names to policies:

    policies:
      video:
        objectives:
          - {name: two-way-delay-percentile, percentile: 99, bound: 0.150}
          - {name: two-way-packet-loss, bound: 0.001}
        objective_ratio: 0.999          # optional; every other key has the default below
        burn_windows:
          - {long_s: 3600, short_s: 300, factor: 14.4, severity: page}

Every problem is reported at once, one line each, as `FILE: KEY.PATH: what was expected`
(the format of every configuration file, `collector.system.config_files`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from collector.contract.records import RTT_BUCKETS_NS, RTT_BUCKETS_S
from collector.contract.slice_catalog import DEFAULT_SLICES
from collector.system.config_files import ConfigError, describe_errors, load_yaml, read_config_text

TWO_WAY_DELAY = "two-way-delay-percentile"
ONE_WAY_DELAY = "one-way-delay-percentile"
DELAY_VARIATION = "two-way-delay-variation-percentile"
LOSS = "two-way-packet-loss"
AVAILABILITY = "availability"
OBJECTIVE_NAMES = (TWO_WAY_DELAY, ONE_WAY_DELAY, DELAY_VARIATION, LOSS, AVAILABILITY)
PERCENTILE_OBJECTIVES = (TWO_WAY_DELAY, ONE_WAY_DELAY, DELAY_VARIATION)
SEVERITIES = ("page", "ticket")
DEFAULT_POLICY_FILE = Path(__file__).parents[1] / "policies.yaml"  # the defaults, as a file to copy
LAB_POLICY_FILE = Path(__file__).parents[1] / "examples" / "lab-policies.yaml"  # seconds-long lookbacks

__all__ = [
    "AVAILABILITY",
    "DEFAULT_BURN_WINDOWS",
    "DEFAULT_POLICY_FILE",
    "DELAY_VARIATION",
    "LAB_POLICY_FILE",
    "LOSS",
    "OBJECTIVE_NAMES",
    "ONE_WAY_DELAY",
    "TWO_WAY_DELAY",
    "BurnWindow",
    "ConfigError",
    "Objective",
    "SlaPolicy",
    "default_policies",
    "load_policies",
    "parse_policies",
    "policy_from_dict",
    "policy_to_dict",
]


# ---------------------------------------------------------------------------------------
# Checks shared by the dataclasses (policies built in code) and the file models, so that
# both refuse the same things with the same words.


def check_percentile(name: str, percentile: float | None) -> None:
    if name not in PERCENTILE_OBJECTIVES:
        if percentile is not None:
            raise ValueError(f"{name} takes no percentile")
        return
    if percentile is None:
        raise ValueError(f"{name} needs a percentile, e.g. 99")
    if not 0 < percentile <= 100:
        raise ValueError(f"expected a percentile above 0 and at most 100, got {percentile!r}")
    if name != TWO_WAY_DELAY and percentile != 99:
        raise ValueError(f"{name} is judged on the windows' 99th percentile: use percentile 99")


def check_bound(name: str, bound: float) -> None:
    if name in PERCENTILE_OBJECTIVES:
        if round(bound * 1e9) not in RTT_BUCKETS_NS:
            allowed = ", ".join(f"{b:g}" for b in RTT_BUCKETS_S)
            raise ValueError(f"delay bound {bound!r} s is not an RTT bucket bound; use one of {allowed} (seconds)")
    elif name == LOSS:
        if not 0 <= bound < 1:
            raise ValueError(f"expected a loss ratio from 0 to below 1 (0.001 = 0.1%), got {bound!r}")
    elif name == AVAILABILITY:
        if not 0 < bound <= 1:
            raise ValueError(f"expected an available share above 0 and at most 1 (0.999 = 99.9%), got {bound!r}")


def check_name(name: str) -> None:
    if name not in OBJECTIVE_NAMES:
        raise ValueError(f"unknown objective {name!r} (objectives are: {', '.join(OBJECTIVE_NAMES)})")


# ---------------------------------------------------------------------------------------
# The policy records.


@dataclass(frozen=True, slots=True)
class Objective:
    """One promise of a slice: a delay percentile, a loss ratio or an available share."""

    name: str
    bound: float  # seconds for delays; max loss ratio; min available share
    percentile: float | None = None  # for the *-percentile objectives, e.g. 99.0

    def __post_init__(self) -> None:
        check_name(self.name)
        check_percentile(self.name, self.percentile)
        check_bound(self.name, self.bound)


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One multi-window alert of the SRE workbook: fire when the error budget burns faster
    than `factor` times the sustainable rate over both the long and the short lookback
    (the short one makes the alert stop soon after the burn stops)."""

    long_s: float
    short_s: float
    factor: float
    severity: str  # "page" | "ticket"

    def __post_init__(self) -> None:
        if not 0 < self.short_s < self.long_s:
            raise ValueError(f"expected 0 < short_s < long_s, got short_s={self.short_s!r}, long_s={self.long_s!r}")
        if not self.factor > 0:
            raise ValueError(f"expected a factor above 0, got {self.factor!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"expected severity page or ticket, got {self.severity!r}")


DEFAULT_BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(3600, 300, 14.4, "page"),  # 2% of a 30-day budget in an hour
    BurnWindow(21600, 1800, 6, "page"),  # 5% in six hours
    BurnWindow(259200, 21600, 1, "ticket"),  # 10% in three days
)


@dataclass(frozen=True)
class SlaPolicy:
    """A slice's objectives and how they are judged over time (see analyzer.sla.verdicts)."""

    slice: str
    objectives: tuple[Objective, ...]
    objective_ratio: float = 0.999  # share of intervals that must comply over the compliance window
    compliance_window_s: float = 30 * 86400
    unavailable_loss: float = 0.75  # an interval is unavailable above this loss (ITU-T Y.1540 / RFC 7680)
    max_clock_error_s: float = 0.001  # one-way objectives are judged only within this clock error
    burn_windows: tuple[BurnWindow, ...] = DEFAULT_BURN_WINDOWS
    hysteresis_intervals: int = 3  # a status must hold this many intervals before it is reported

    def __post_init__(self) -> None:
        # Lists from callers become tuples: a policy is a value and must stay hashable.
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "burn_windows", tuple(self.burn_windows))
        if not self.objectives:
            raise ValueError(f"slice {self.slice!r}: a policy needs at least one objective")
        names = [o.name for o in self.objectives]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"slice {self.slice!r}: objective {name!r} appears twice")
        if not 0 < self.objective_ratio < 1:
            raise ValueError(f"objective_ratio must be above 0 and below 1, got {self.objective_ratio!r}")
        if not self.compliance_window_s > 0:
            raise ValueError(f"compliance_window_s must be above 0, got {self.compliance_window_s!r}")
        if not 0 < self.unavailable_loss < 1:
            raise ValueError(f"unavailable_loss must be above 0 and below 1, got {self.unavailable_loss!r}")
        if not self.max_clock_error_s >= 0:
            raise ValueError(f"max_clock_error_s must be 0 or more, got {self.max_clock_error_s!r}")
        if not (isinstance(self.hysteresis_intervals, int) and self.hysteresis_intervals >= 1):
            raise ValueError(f"hysteresis_intervals must be an integer of 1 or more, got {self.hysteresis_intervals!r}")

    @property
    def lookbacks_s(self) -> tuple[float, ...]:
        """The distinct burn-rate lookbacks, in the order the burn windows name them."""
        lookbacks: list[float] = []
        for window in self.burn_windows:
            for length in (window.long_s, window.short_s):
                if length not in lookbacks:
                    lookbacks.append(length)
        return tuple(lookbacks)

    def objective(self, name: str) -> Objective | None:
        return next((o for o in self.objectives if o.name == name), None)


def default_policies() -> dict[str, SlaPolicy]:
    """One policy per slice of `collector.contract.slice_catalog.DEFAULT_SLICES` (also analyzer/policies.yaml)."""
    objectives = {
        "video": (
            Objective(TWO_WAY_DELAY, 0.150, 99.0),
            Objective(DELAY_VARIATION, 0.030, 99.0),
            Objective(LOSS, 0.001),
            Objective(AVAILABILITY, 0.9999),
        ),
        "egov": (Objective(TWO_WAY_DELAY, 0.300, 99.0), Objective(LOSS, 0.005), Objective(AVAILABILITY, 0.999)),
        "data": (Objective(TWO_WAY_DELAY, 1.0, 99.0), Objective(LOSS, 0.01), Objective(AVAILABILITY, 0.999)),
        "best-effort": (Objective(LOSS, 0.05), Objective(AVAILABILITY, 0.99)),
    }
    return {s.name: SlaPolicy(s.name, objectives[s.name]) for s in DEFAULT_SLICES}


def policy_to_dict(policy: SlaPolicy) -> dict:
    """A JSON-ready dict (the file's keys); `policy_from_dict` reverses it exactly."""
    data = {name: getattr(policy, name) for name in _POLICY_KEYS}
    data["objectives"] = [asdict(o) for o in policy.objectives]
    data["burn_windows"] = [asdict(w) for w in policy.burn_windows]
    return data


def policy_from_dict(data: dict) -> SlaPolicy:
    fields = dict(data)
    fields["objectives"] = tuple(Objective(**o) for o in fields["objectives"])
    fields["burn_windows"] = tuple(BurnWindow(**w) for w in fields["burn_windows"])
    return SlaPolicy(**fields)


_POLICY_KEYS = (
    "slice",
    "objectives",
    "objective_ratio",
    "compliance_window_s",
    "unavailable_loss",
    "max_clock_error_s",
    "burn_windows",
    "hysteresis_intervals",
)


# ---------------------------------------------------------------------------------------
# The file: pydantic models that say what it may contain.

SLICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # as collector.agent.config's slice names
StrictInt = Annotated[int, Field(strict=True)]
Seconds = Annotated[float, Field(strict=True, gt=0)]


def _default(name: str) -> Any:
    return SlaPolicy.__dataclass_fields__[name].default


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectiveModel(_Strict):
    name: str
    percentile: Annotated[float, Field(strict=True)] | None = Field(default=None, validate_default=True)
    bound: Annotated[float, Field(strict=True, ge=0)]

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        check_name(value)
        return value

    @field_validator("percentile")
    @classmethod
    def _percentile(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "name" in info.data:  # else the name's own error says what to fix
            check_percentile(info.data["name"], value)
        return value

    @field_validator("bound")
    @classmethod
    def _bound(cls, value: float, info: ValidationInfo) -> float:
        if "name" in info.data:
            check_bound(info.data["name"], value)
        return value


class BurnWindowModel(_Strict):
    long_s: Seconds
    short_s: Seconds
    factor: Annotated[float, Field(strict=True, gt=0)]
    severity: Literal["page", "ticket"]

    @model_validator(mode="after")
    def _short_within_long(self) -> BurnWindowModel:
        if self.short_s >= self.long_s:
            raise ValueError(f"short_s ({self.short_s:g}) must be shorter than long_s ({self.long_s:g})")
        return self


class PolicyModel(_Strict):
    objectives: list[ObjectiveModel] = Field(min_length=1)
    objective_ratio: Annotated[float, Field(strict=True, gt=0, lt=1)] = _default("objective_ratio")
    compliance_window_s: Seconds = _default("compliance_window_s")
    unavailable_loss: Annotated[float, Field(strict=True, gt=0, lt=1)] = _default("unavailable_loss")
    max_clock_error_s: Annotated[float, Field(strict=True, ge=0)] = _default("max_clock_error_s")
    burn_windows: list[BurnWindowModel] | None = None  # None: DEFAULT_BURN_WINDOWS
    hysteresis_intervals: StrictInt = Field(default=_default("hysteresis_intervals"), ge=1)

    @field_validator("objectives")
    @classmethod
    def _once_each(cls, value: list[ObjectiveModel]) -> list[ObjectiveModel]:
        names = [o.name for o in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"objective {name!r} appears twice")
        return value

    def to_policy(self, slice_name: str) -> SlaPolicy:
        windows = (
            DEFAULT_BURN_WINDOWS
            if self.burn_windows is None
            else tuple(BurnWindow(w.long_s, w.short_s, w.factor, w.severity) for w in self.burn_windows)
        )
        return SlaPolicy(
            slice=slice_name,
            objectives=tuple(Objective(o.name, o.bound, o.percentile) for o in self.objectives),
            objective_ratio=self.objective_ratio,
            compliance_window_s=self.compliance_window_s,
            unavailable_loss=self.unavailable_loss,
            max_clock_error_s=self.max_clock_error_s,
            burn_windows=windows,
            hysteresis_intervals=self.hysteresis_intervals,
        )


def _slice_name(value: str) -> str:
    if not SLICE_NAME.match(value):
        raise ValueError(f"slice name {value!r} must be a lowercase letter then lowercase letters, digits, hyphens")
    return value


SliceName = Annotated[str, Field(strict=True), AfterValidator(_slice_name)]


class PolicyFileModel(_Strict):
    policies: dict[SliceName, PolicyModel] = Field(min_length=1)


def load_policies(path: str | Path) -> dict[str, SlaPolicy]:
    """Read a policy file: slice name -> SlaPolicy. Raises ConfigError naming FILE and KEY."""
    path = Path(path)
    return parse_policies(read_config_text(path), source=str(path))


def parse_policies(text: str, source: str = "<policies>") -> dict[str, SlaPolicy]:
    """Validate policy text; `source` names it in messages."""
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping with a 'policies' key, got {type(data).__name__}"])
    try:
        model = PolicyFileModel.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc, PolicyFileModel)
        # A bad slice name is reported at the key itself, "policies.NAME", not "policies.NAME.[key]".
        raise ConfigError([f"{source}: {p.replace('.[key]:', ':')}" for p in problems]) from None
    return {name: entry.to_policy(name) for name, entry in model.policies.items()}
