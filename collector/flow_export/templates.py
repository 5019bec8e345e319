"""Templates of IPFIX and NetFlow v9 exporters: the cache, its persistence, and data that
arrives before its template.

A template is keyed by (exporter address, exporter port, observation domain / source id,
template id), as RFC 7011 section 8 and RFC 3954 section 5 scope template ids. The cache:

- replaces a template when a new definition arrives under the same key;
- withdraws one (RFC 7011 section 8.1: a template record with no fields) or all data or
  options templates of a domain (template id 2 or 3 withdrawn);
- expires templates not refreshed within `timeout_s`: over UDP an exporter re-sends its
  templates periodically and never withdraws them (RFC 7011 section 8.4, RFC 3954 section
  5.2), so a template that stops being refreshed is forgotten;
- keeps data sets whose template is unknown in a bounded buffer (oldest dropped first and
  counted) and hands them back when the template arrives, so the first seconds after a
  restart of the exporter or of us are not lost;
- is bounded: at most `max_templates` in all and `max_per_exporter` per exporter address
  (whatever its ports and domains), each of at most `MAX_TEMPLATE_FIELDS` fields. A new
  template beyond a bound is refused and counted in `refused` by reason ("template-limit",
  "template-total", "template-size"); templates already held are refreshed and replaced as
  usual, so a flood of spoofed exporters cannot push out the real ones;
- is written to a JSON file atomically (a temporary file, fsync, rename) when it changed,
  and read back at start, so that a restart of the receiver decodes the next data sets at
  once instead of waiting for the template refresh. Saving is split so that no I/O happens
  under the receiver's lock: `snapshot` (under the lock) copies the entries, and
  `TemplateSnapshot.write` (outside it) serialises and writes them.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.system.files import write_atomically

VARIABLE_LENGTH = 0xFFFF
DEFAULT_TEMPLATE_TIMEOUT_S = 1800.0
DEFAULT_PENDING_LIMIT = 1024
PENDING_BYTES_LIMIT = 16 << 20  # parked data sets are up to 64 KiB each: bound their octets too
DEFAULT_MAX_TEMPLATES = 4096
DEFAULT_MAX_TEMPLATES_PER_EXPORTER = 256
MAX_TEMPLATE_FIELDS = 256  # real templates have tens; a datagram could define 16,000
SAVE_EVERY_S = 5.0
REFRESH_SAVE_S = 60.0  # refreshes alone are saved this often, so saved times stay recent
MAX_STATE_FILE_BYTES = 64 << 20  # far above what the bounds let us write
FILE_FORMAT = 1

SourceKey = tuple[str, int, int]  # exporter address, exporter port, domain: whose templates and rates
TemplateKey = tuple[str, int, int, int]  # exporter address, exporter port, domain, template id


@dataclass(frozen=True, slots=True)
class Template:
    """One template or options template as its exporter defined it."""

    template_id: int
    fields: tuple[tuple[int, int, int], ...]  # (element id, length, enterprise number; 0 = IANA)
    scope_count: int = 0  # options templates: the first scope_count fields are the scope
    scope_elements: bool = True  # False for NetFlow v9, whose scope fields are scope types, not elements

    @property
    def is_options(self) -> bool:
        return self.scope_count > 0

    @property
    def fixed_length(self) -> bool:
        return all(length != VARIABLE_LENGTH for _, length, _ in self.fields)

    @property
    def minimum_record_length(self) -> int:
        """Octets of the shortest possible record (variable-length fields as 1 octet)."""
        return sum(1 if length == VARIABLE_LENGTH else length for _, length, _ in self.fields)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.template_id,
            "fields": self.fields,  # json writes the tuples as arrays, without a copy per field
            "scope_count": self.scope_count,
            "scope_elements": self.scope_elements,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Template:
        return cls(
            int(data["id"]),
            tuple((int(e), int(n), int(p)) for e, n, p in data["fields"]),
            int(data["scope_count"]),
            bool(data["scope_elements"]),
        )


@dataclass(frozen=True, slots=True)
class PendingSet:
    """A data set parked until its template arrives, with what decoding it needs later."""

    protocol: str  # "ipfix" | "netflow9": whose counter a drop goes to
    key: TemplateKey
    data: bytes
    context: Any  # the decoder's per-message context (export time, uptime...)
    parked_at: float


class TemplateCache:
    """Templates by key, with withdrawal, expiry, persistence and the pending buffer.

    `now` arguments are wall-clock seconds (time.time()): they are persisted, so they must
    mean the same after a restart."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        timeout_s: float = DEFAULT_TEMPLATE_TIMEOUT_S,
        pending_limit: int = DEFAULT_PENDING_LIMIT,
        max_templates: int = DEFAULT_MAX_TEMPLATES,
        max_per_exporter: int = DEFAULT_MAX_TEMPLATES_PER_EXPORTER,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.timeout_s = timeout_s
        self.max_templates = max_templates
        self.max_per_exporter = max_per_exporter
        self._templates: dict[TemplateKey, tuple[Template, float]] = {}
        # the keys of each (exporter, port, domain): a withdrawal of all its templates touches
        # only them (a datagram holds up to 16,000 withdrawals; each scanning every template
        # held would keep the receiver busy for seconds)
        self._by_source: dict[SourceKey, set[TemplateKey]] = {}
        self._per_exporter: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # new templates beyond a bound, by reason
        self._pending: deque[PendingSet] = deque()
        self._pending_keys: Counter[TemplateKey] = Counter()
        self._pending_bytes = 0
        self.pending_limit = pending_limit
        # data sets dropped from the full buffer or unclaimed for timeout_s, per protocol
        self.pending_dropped: Counter[str] = Counter()
        self._dirty = False
        self._saved_at = 0.0
        if self.path is not None and self.path.exists():
            self._load()

    # -- templates ---------------------------------------------------------------------------

    def learn(self, key: TemplateKey, template: Template, now: float) -> list[PendingSet]:
        """Store (or refresh) a template; return the parked data sets that waited for it.
        A new template beyond a bound is refused (counted) and returns nothing."""
        previous = self._templates.get(key)
        refusal = self._refusal(key[0], template, new=previous is None)
        if refusal is not None:
            self.refused[refusal] += 1
            return []
        if previous is None:
            self._per_exporter[key[0]] += 1
            self._by_source.setdefault(key[:3], set()).add(key)
        self._templates[key] = (template, now)
        if previous is None or previous[0] != template:
            self._dirty = True
        if not self._pending_keys.get(key):
            return []
        claimed = [p for p in self._pending if p.key == key]
        self._pending = deque(p for p in self._pending if p.key != key)
        self._pending_bytes -= sum(len(p.data) for p in claimed)
        del self._pending_keys[key]
        return claimed

    def _refusal(self, exporter: str, template: Template, *, new: bool) -> str | None:
        if len(template.fields) > MAX_TEMPLATE_FIELDS:  # a replacement too: it would grow the cache as much
            return "template-size"
        if new and self._per_exporter[exporter] >= self.max_per_exporter:
            return "template-limit"
        if new and len(self._templates) >= self.max_templates:
            return "template-total"
        return None

    def _forget(self, key: TemplateKey) -> None:
        del self._templates[key]
        source = key[:3]
        self._by_source[source].discard(key)
        if not self._by_source[source]:
            del self._by_source[source]
        exporter = key[0]
        self._per_exporter[exporter] -= 1
        if self._per_exporter[exporter] <= 0:
            del self._per_exporter[exporter]

    def get(self, key: TemplateKey, now: float) -> Template | None:
        entry = self._templates.get(key)
        if entry is None:
            return None
        template, learned = entry
        if now - learned > self.timeout_s:
            self._forget(key)
            self._dirty = True
            return None
        return template

    def withdraw(self, key: TemplateKey) -> bool:
        """RFC 7011 section 8.1: forget one template. True when there was one."""
        if key not in self._templates:
            return False
        self._forget(key)
        self._dirty = True
        return True

    def withdraw_all(self, exporter: str, port: int, domain: int, *, options: bool) -> int:
        """Forget every data template (options=False) or options template of a domain."""
        keys = self._by_source.get((exporter, port, domain), ())
        doomed = [k for k in keys if self._templates[k][0].is_options == options]
        for key in doomed:
            self._forget(key)
        self._dirty = self._dirty or bool(doomed)
        return len(doomed)

    def expire(self, now: float) -> int:
        """Forget templates and parked data older than the timeout; how many templates went."""
        stale = [k for k, (_, learned) in self._templates.items() if now - learned > self.timeout_s]
        for key in stale:
            self._forget(key)
        self._dirty = self._dirty or bool(stale)
        while self._pending and now - self._pending[0].parked_at > self.timeout_s:
            self._drop_oldest_pending()
        return len(stale)

    def counts_by_exporter(self) -> dict[str, int]:
        return dict(self._per_exporter)

    def __len__(self) -> int:
        return len(self._templates)

    # -- data before its template ------------------------------------------------------------

    def park(self, protocol: str, key: TemplateKey, data: bytes | memoryview, context: Any, now: float) -> None:
        if self.pending_limit <= 0:
            self.pending_dropped[protocol] += 1
            return
        while self._pending and (
            len(self._pending) >= self.pending_limit or self._pending_bytes + len(data) > PENDING_BYTES_LIMIT
        ):
            self._drop_oldest_pending()
        self._pending.append(PendingSet(protocol, key, bytes(data), context, now))
        self._pending_keys[key] += 1
        self._pending_bytes += len(data)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _drop_oldest_pending(self) -> None:
        dropped = self._pending.popleft()
        self._pending_bytes -= len(dropped.data)
        self._pending_keys[dropped.key] -= 1
        if self._pending_keys[dropped.key] <= 0:
            del self._pending_keys[dropped.key]
        self.pending_dropped[dropped.protocol] += 1

    # -- persistence -------------------------------------------------------------------------

    def due_snapshot(self, now: float) -> TemplateSnapshot | None:
        """A snapshot if something changed since a save more than SAVE_EVERY_S old, or if the
        last save is more than REFRESH_SAVE_S old (templates refreshed since have newer times)."""
        if self.path is None or (not self._templates and not self._dirty):
            return None
        since = now - self._saved_at
        if (self._dirty and since >= SAVE_EVERY_S) or since >= REFRESH_SAVE_S:
            return self.snapshot(now)
        return None

    def snapshot(self, now: float) -> TemplateSnapshot:
        """The entries as they are (a shallow copy: templates are immutable); marks them saved,
        `unsaved` undoes that when the write fails."""
        self._dirty = False
        self._saved_at = now
        return TemplateSnapshot(tuple((k, t, learned) for k, (t, learned) in self._templates.items()))

    def unsaved(self) -> None:
        self._dirty = True

    def _load(self) -> None:
        """Read the saved templates, within the bounds; a damaged file is ignored (templates
        come again anyway)."""
        assert self.path is not None
        try:
            data = json.loads(read_bounded(self.path))
            if data.get("format") != FILE_FORMAT:
                return
            entries = []
            for entry in data["templates"]:
                template = Template.from_json(entry)
                key = (str(entry["exporter"]), int(entry["port"]), int(entry["domain"]), template.template_id)
                entries.append((key, template, float(entry["learned"])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        for key, template, learned in entries:
            self.learn(key, template, learned)
        self._dirty = False


@dataclass(frozen=True, slots=True)
class TemplateSnapshot:
    """The templates at one moment, immutable so that it is written without the lock."""

    entries: tuple[tuple[TemplateKey, Template, float], ...]

    def write(self, path: Path) -> None:
        # One template at a time, not the whole file in one json.dumps: the C encoder keeps
        # the GIL for the whole of a call, and the receiver's thread needs it to go on receiving.
        entries = ", ".join(
            json.dumps({"exporter": k[0], "port": k[1], "domain": k[2], "learned": learned, **t.to_json()})
            for k, t, learned in self.entries
        )
        write_atomically(path, f'{{"format": {FILE_FORMAT}, "templates": [{entries}]}}')


def read_bounded(path: Path) -> str:
    """A state file's text; ValueError when it is larger than any file we write."""
    with path.open("rb") as handle:
        data = handle.read(MAX_STATE_FILE_BYTES + 1)
    if len(data) > MAX_STATE_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_STATE_FILE_BYTES} octets")
    return data.decode()
