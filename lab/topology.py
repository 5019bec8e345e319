"""Topology files: YAML validated by pydantic at the edge, frozen dataclasses inside.

A topology names sites (with a role), links between them (with a routing cost and a
bandwidth), slices (name, DSCP, slice ID, share of every link) and one /48 address plan.
Everything that could make `lab up` fail half-way is refused here, before anything exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.system.config_files import ConfigError, describe_errors, load_yaml
from lab.addressing import AddressPlan, AddressPlanError

# Interface names are `to-<peer>` and Linux allows 15 characters, hence 12 for a site.
# No hyphen, so that a link name "a-b" always splits into its two sites.
SITE_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
SLICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class TopologyError(ValueError):
    """A topology file that cannot be built; the message names the file and the key."""


class Role(str, Enum):
    CORE = "core"
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"


# ---------------------------------------------------------------------------------------
# The edge: what a YAML file may say.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteModel(_Strict):
    name: str
    role: Role

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SITE_NAME.match(value):
            raise ValueError(
                f"site name {value!r} must be a lowercase letter then up to 11 letters or digits"
                " (it becomes part of 15-character interface names)"
            )
        return value


class LinkModel(_Strict):
    a: str
    b: str
    cost: int = Field(default=10, ge=1, le=65535)
    bandwidth_mbit: float | None = Field(default=None, gt=0, le=10000)


class SliceModel(_Strict):
    name: str
    dscp: int = Field(ge=0, le=63)
    id: int = Field(ge=1, le=239, description="slice/NRP ID; also the HTB class minor number offset")
    share: float = Field(gt=0, le=100, description="percent of every link's bandwidth")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SLICE_NAME.match(value):
            raise ValueError(f"slice name {value!r} must be lowercase letters, digits and hyphens")
        return value


class AddressingModel(_Strict):
    prefix: str
    loopbacks: str | None = None
    links: str | None = None
    hosts: str | None = None


class TopologyModel(_Strict):
    name: str
    description: str = ""
    addressing: AddressingModel
    bandwidth_mbit: float = Field(default=100, gt=0, le=10000, description="default link bandwidth")
    sites: list[SiteModel] = Field(min_length=2)
    links: list[LinkModel] = Field(min_length=1)
    slices: list[SliceModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TopologyModel:
        names = [s.name for s in self.sites]
        _no_duplicates("sites", names)
        known = set(names)
        pairs: set[frozenset[str]] = set()
        for i, link in enumerate(self.links):
            for end in ("a", "b"):
                site = getattr(link, end)
                if site not in known:
                    raise ValueError(f"links[{i}].{end}: unknown site {site!r} (sites are: {', '.join(names)})")
            if link.a == link.b:
                raise ValueError(f"links[{i}]: a link needs two different sites, got {link.a!r} twice")
            pair = frozenset((link.a, link.b))
            if pair in pairs:
                raise ValueError(f"links[{i}]: a second link between {link.a!r} and {link.b!r}")
            pairs.add(pair)
        _no_duplicates("slices (name)", [s.name for s in self.slices])
        _no_duplicates("slices (dscp)", [s.dscp for s in self.slices])
        _no_duplicates("slices (id)", [s.id for s in self.slices])
        total = sum(s.share for s in self.slices)
        if total > 100 + 1e-9:
            shares = ", ".join(f"{s.name}={s.share:g}" for s in self.slices)
            raise ValueError(f"slices: shares add up to {total:g}%, more than 100% ({shares})")
        if not any(s.dscp == 0 for s in self.slices):
            raise ValueError("slices: one slice must have dscp 0; it receives all unmarked traffic")
        return self


def _no_duplicates(key: str, values: list) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{key}: {value!r} appears twice")
        seen.add(value)


# ---------------------------------------------------------------------------------------
# The inside: frozen, slotted, and already resolved (defaults applied, indices assigned).


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    role: Role
    index: int


@dataclass(frozen=True, slots=True)
class Link:
    name: str  # "a-b" in the order the file wrote it
    a: str
    b: str
    cost: int
    bandwidth_mbit: float
    index: int

    @property
    def ends(self) -> tuple[str, str]:
        return (self.a, self.b)

    def peer(self, site: str) -> str:
        if site == self.a:
            return self.b
        if site == self.b:
            return self.a
        raise KeyError(f"{site!r} is not an end of link {self.name}")

    def interface(self, site: str) -> str:
        """The veth name inside `site`'s namespace: named after the site at the far end."""
        return "to-" + self.peer(site)


@dataclass(frozen=True, slots=True)
class Slice:
    name: str
    dscp: int
    slice_id: int
    share: float

    @property
    def tos(self) -> int:
        """The traffic-class byte (DSCP in the upper six bits), as `ping -Q` takes it."""
        return self.dscp << 2


# Every namespace the lab creates starts with "xl", so nothing else is ever touched.
# `xnetmon lab` uses "xl-"; test runs add their process id ("xl4242-") so that two runs
# on one machine do not collide.
NAMESPACE_PREFIX = "xl-"
NAMESPACE_PREFIX_PATTERN = re.compile(r"^xl[a-z0-9]{0,10}-$")


@dataclass(frozen=True, slots=True)
class LabTopology:
    name: str
    description: str
    sites: tuple[Site, ...]
    links: tuple[Link, ...]
    slices: tuple[Slice, ...]
    plan: AddressPlan

    # -- look-ups that turn user input into objects, with errors that list the choices --

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise TopologyError(f"no site {name!r} in topology {self.name!r} (sites are: {self._site_names()})")

    def link(self, name: str) -> Link:
        """A link by "a-b" in either order."""
        ends = name.split("-")
        if len(ends) == 2:
            for link in self.links:
                if set(ends) == set(link.ends):
                    return link
        names = ", ".join(link.name for link in self.links)
        raise TopologyError(f"no link {name!r} in topology {self.name!r} (links are: {names})")

    def link_between(self, a: str, b: str) -> Link:
        return self.link(f"{a}-{b}")

    def slice(self, name: str) -> Slice:
        for slice_ in self.slices:
            if slice_.name == name:
                return slice_
        names = ", ".join(s.name for s in self.slices)
        raise TopologyError(f"no slice {name!r} in topology {self.name!r} (slices are: {names})")

    def links_of(self, site: str) -> tuple[Link, ...]:
        return tuple(link for link in self.links if site in link.ends)

    @property
    def default_slice(self) -> Slice:
        return next(s for s in self.slices if s.dscp == 0)

    def _site_names(self) -> str:
        return ", ".join(s.name for s in self.sites)

    # -- addresses, delegated to the plan but keyed by name --

    def loopback(self, site: str) -> str:
        return str(self.plan.loopback(self.site(site).index))

    def host_prefix(self, site: str) -> str:
        return str(self.plan.host_prefix(self.site(site).index))

    def host_address(self, site: str) -> str:
        return str(self.plan.host_address(self.site(site).index))

    def link_prefix(self, link: str) -> str:
        return str(self.plan.link_prefix(self.link(link).index))

    def link_address(self, link: str, site: str) -> str:
        found = self.link(link)
        return str(self.plan.link_address(found.index, 1 if site == found.a else 2 if site == found.b else 0))

    def site_of_address(self, address: str) -> str | None:
        """Which site owns an address (loopback, host /64 or its end of a link), if any."""
        for site in self.sites:
            if address in (self.loopback(site.name), self.host_address(site.name)):
                return site.name
        for link in self.links:
            for end in link.ends:
                if address == self.link_address(link.name, end):
                    return end
        return None


def from_model(model: TopologyModel) -> LabTopology:
    sites = tuple(Site(s.name, s.role, i) for i, s in enumerate(model.sites))
    links = tuple(
        Link(f"{link.a}-{link.b}", link.a, link.b, link.cost, link.bandwidth_mbit or model.bandwidth_mbit, i)
        for i, link in enumerate(model.links)
    )
    slices = tuple(Slice(s.name, s.dscp, s.id, s.share) for s in model.slices)
    a = model.addressing
    try:
        plan = AddressPlan.build(a.prefix, len(sites), len(links), loopbacks=a.loopbacks, links=a.links, hosts=a.hosts)
    except AddressPlanError as exc:
        raise ValueError(f"addressing: {exc}") from None
    return LabTopology(model.name, model.description, sites, links, slices, plan)


def parse(text: str, source: str = "<topology>") -> LabTopology:
    """Validate a topology given as YAML text; errors name `source` and the key."""
    try:
        data = load_yaml(text, source)
    except ConfigError as exc:  # names the file, the line and what is wrong
        raise TopologyError(str(exc)) from None
    if not isinstance(data, dict):
        raise TopologyError(f"{source}: expected a mapping with name, addressing, sites, links, slices")
    try:
        return from_model(TopologyModel.model_validate(data))
    except ValidationError as exc:
        raise TopologyError(f"{source}: {'; '.join(describe_errors(exc, TopologyModel))}") from None
    except ValueError as exc:
        raise TopologyError(f"{source}: {exc}") from None


def builtin_names() -> list[str]:
    folder = resources.files("lab") / "topologies"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def source_text(name_or_path: str) -> tuple[str, str]:
    """(YAML text, label for messages) of a built-in topology by name or a file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            return path.read_text(), str(path)
        except OSError as exc:
            raise TopologyError(f"{path}: cannot read: {exc.strerror}") from None
    resource = resources.files("lab") / "topologies" / f"{name_or_path}.yaml"
    if not resource.is_file():
        raise TopologyError(
            f"no topology {name_or_path!r}: built-in ones are {', '.join(builtin_names())}, or give a .yaml path"
        )
    return resource.read_text(), f"lab/topologies/{name_or_path}.yaml"


def load(name_or_path: str) -> LabTopology:
    """A built-in topology by name ("tiny", "small") or a YAML file by path."""
    return parse(*source_text(name_or_path))
