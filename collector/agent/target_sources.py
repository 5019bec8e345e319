"""Where an agent's targets come from: one address, a file of them, or a CIDR expansion.

Each `targets` entry of the configuration expands here into (name, address) pairs, with
every problem collected as "KEY: message" rather than raised one at a time. A targets file
is either text, one "NAME ADDRESS" per line (`#` starts a comment), or, when it ends in
.yaml/.yml, a YAML list of {name, address} mappings. A CIDR names its addresses
NAME_PREFIX + offset in the prefix (h0, h1, ...), or by the address itself without a prefix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import yaml
from netaddr import IPNetwork
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from collector.agent.config import AgentConfig, IPAddressText, NameText, TargetModel, describe_errors

MAX_PROBLEMS_PER_FILE = 20  # a wholly wrong file should not print thousands of lines


@dataclass
class Expansion:
    """The (name, address) pairs of one entry, or what went wrong."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "KEY: message", without the file name


def expand(config: AgentConfig, index: int, entry: TargetModel, room: int) -> Expansion:
    """Expand `targets[index]`; `room` is how many targets the limit still allows."""
    key = f"targets[{index}]"
    if entry.address is not None:
        assert entry.name is not None  # the model requires a name with an address
        return Expansion(pairs=[(entry.name, entry.address)])
    if entry.file is not None:
        return _from_file(config, f"{key}.file", entry.file)
    return _from_cidr(config, f"{key}.cidr", entry, room)


def _from_cidr(config: AgentConfig, key: str, entry: TargetModel, room: int) -> Expansion:
    assert entry.cidr is not None  # the model requires one of address, file or cidr
    network = IPNetwork(entry.cidr)
    size = network.size if entry.count is None else min(entry.count, network.size)
    if entry.count is not None and entry.count > network.size:
        return Expansion(
            problems=[f"{key}: count {entry.count} is more than the {network.size} addresses of {network}"]
        )
    limit = config.probing.max_targets
    if size > room:
        return Expansion(
            problems=[
                f"{key}: {network} expands to {size} targets, more than probing.max_targets ({limit}) allows"
                + (f" after the {limit - room} before it" if room < limit else "")
                + "; use a longer prefix, a count, or raise probing.max_targets"
            ]
        )
    addresses = (str(a) for a in islice(network, size))
    if entry.name_prefix is None:
        return Expansion(pairs=[(a, a) for a in addresses])
    return Expansion(pairs=[(f"{entry.name_prefix}{i}", a) for i, a in enumerate(addresses)])


def _from_file(config: AgentConfig, key: str, relative: str) -> Expansion:
    path = config.path_of(relative)
    try:
        text = path.read_text()
    except OSError as exc:
        return Expansion(problems=[f"{key}: cannot read {path}: {exc.strerror or exc}"])
    except UnicodeDecodeError:
        return Expansion(problems=[f"{key}: cannot read {path}: not UTF-8 text"])
    if path.suffix in (".yaml", ".yml"):
        found = _yaml_pairs(text, path)
    else:
        found = _text_pairs(text, path)
    problems = [f"{key}: {p}" for p in found.problems]
    if len(problems) > MAX_PROBLEMS_PER_FILE:
        more = len(problems) - MAX_PROBLEMS_PER_FILE
        problems = problems[:MAX_PROBLEMS_PER_FILE] + [f"{key}: ... and {more} more problems in {path}"]
    return Expansion(pairs=found.pairs, problems=problems)


def _text_pairs(text: str, path: Path) -> Expansion:
    found = Expansion()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            found.problems.append(f'{path}:{number}: expected "NAME ADDRESS", got {line.strip()!r}')
            continue
        name, address = words
        try:
            found.pairs.append((name, ipaddress.ip_address(address).compressed))
        except ValueError:
            found.problems.append(f"{path}:{number}: {address!r} is not an IP address")
    return found


class _FileTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: NameText
    address: IPAddressText


_FILE_TARGETS = TypeAdapter(list[_FileTarget])


def _yaml_pairs(text: str, path: Path) -> Expansion:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        return Expansion(problems=[f"{where}: invalid YAML: {exc.problem}"])
    except yaml.YAMLError as exc:
        return Expansion(problems=[f"{path}: invalid YAML: {exc}"])
    if data is None:
        return Expansion()
    try:
        entries = _FILE_TARGETS.validate_python(data)
    except ValidationError as exc:
        if not isinstance(data, list):
            return Expansion(problems=[f"{path}: expected a list of {{name, address}} mappings"])
        return Expansion(problems=[f"{path}: {p}" for p in describe_errors(exc, list[_FileTarget])])
    return Expansion(pairs=[(e.name, e.address) for e in entries])
