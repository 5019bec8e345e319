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
- is written to a JSON file atomically (a temporary file, fsync, rename) when it changed,
  at most once a second and at close, and read back at start, so that a restart of the
  receiver decodes the next data sets at once instead of waiting for the template refresh.
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
SAVE_EVERY_S = 1.0
REFRESH_SAVE_S = 60.0  # refreshes alone are saved this often, so saved times stay recent
FILE_FORMAT = 1

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
            "fields": [list(f) for f in self.fields],
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
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.timeout_s = timeout_s
        self._templates: dict[TemplateKey, tuple[Template, float]] = {}
        self._pending: deque[PendingSet] = deque()
        self._pending_keys: Counter[TemplateKey] = Counter()
        self.pending_limit = pending_limit
        # data sets dropped from the full buffer or unclaimed for timeout_s, per protocol
        self.pending_dropped: Counter[str] = Counter()
        self._dirty = False
        self._saved_at = 0.0
        if self.path is not None and self.path.exists():
            self._load()

    # -- templates ---------------------------------------------------------------------------

    def learn(self, key: TemplateKey, template: Template, now: float) -> list[PendingSet]:
        """Store (or refresh) a template; return the parked data sets that waited for it."""
        previous = self._templates.get(key)
        self._templates[key] = (template, now)
        if previous is None or previous[0] != template:
            self._dirty = True
        if not self._pending_keys.get(key):
            return []
        claimed = [p for p in self._pending if p.key == key]
        self._pending = deque(p for p in self._pending if p.key != key)
        del self._pending_keys[key]
        return claimed

    def get(self, key: TemplateKey, now: float) -> Template | None:
        entry = self._templates.get(key)
        if entry is None:
            return None
        template, learned = entry
        if now - learned > self.timeout_s:
            del self._templates[key]
            self._dirty = True
            return None
        return template

    def withdraw(self, key: TemplateKey) -> bool:
        """RFC 7011 section 8.1: forget one template. True when there was one."""
        if self._templates.pop(key, None) is None:
            return False
        self._dirty = True
        return True

    def withdraw_all(self, exporter: str, port: int, domain: int, *, options: bool) -> int:
        """Forget every data template (options=False) or options template of a domain."""
        doomed = [
            k for k, (t, _) in self._templates.items() if k[:3] == (exporter, port, domain) and t.is_options == options
        ]
        for key in doomed:
            del self._templates[key]
        self._dirty = self._dirty or bool(doomed)
        return len(doomed)

    def expire(self, now: float) -> int:
        """Forget templates and parked data older than the timeout; how many templates went."""
        stale = [k for k, (_, learned) in self._templates.items() if now - learned > self.timeout_s]
        for key in stale:
            del self._templates[key]
        self._dirty = self._dirty or bool(stale)
        while self._pending and now - self._pending[0].parked_at > self.timeout_s:
            self._drop_oldest_pending()
        return len(stale)

    def counts_by_exporter(self) -> dict[str, int]:
        counts: Counter[str] = Counter(key[0] for key in self._templates)
        return dict(counts)

    def __len__(self) -> int:
        return len(self._templates)

    # -- data before its template ------------------------------------------------------------

    def park(self, protocol: str, key: TemplateKey, data: bytes | memoryview, context: Any, now: float) -> None:
        if self.pending_limit <= 0:
            self.pending_dropped[protocol] += 1
            return
        while len(self._pending) >= self.pending_limit:
            self._drop_oldest_pending()
        self._pending.append(PendingSet(protocol, key, bytes(data), context, now))
        self._pending_keys[key] += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _drop_oldest_pending(self) -> None:
        dropped = self._pending.popleft()
        self._pending_keys[dropped.key] -= 1
        if self._pending_keys[dropped.key] <= 0:
            del self._pending_keys[dropped.key]
        self.pending_dropped[dropped.protocol] += 1

    # -- persistence -------------------------------------------------------------------------

    def maybe_save(self, now: float) -> None:
        """Save if something changed and the last save is more than a second old, or if the
        last save is more than a minute old (templates refreshed since have newer times)."""
        if self.path is None or (not self._templates and not self._dirty):
            return
        since = now - self._saved_at
        if (self._dirty and since >= SAVE_EVERY_S) or since >= REFRESH_SAVE_S:
            self.save(now)

    def save(self, now: float) -> None:
        if self.path is None:
            return
        entries = [
            {"exporter": k[0], "port": k[1], "domain": k[2], "learned": learned, **t.to_json()}
            for k, (t, learned) in self._templates.items()
        ]
        write_atomically(self.path, json.dumps({"format": FILE_FORMAT, "templates": entries}))
        self._dirty = False
        self._saved_at = now

    def _load(self) -> None:
        """Read the saved templates; a damaged file is ignored (templates come again anyway)."""
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != FILE_FORMAT:
                return
            for entry in data["templates"]:
                template = Template.from_json(entry)
                key = (str(entry["exporter"]), int(entry["port"]), int(entry["domain"]), template.template_id)
                self._templates[key] = (template, float(entry["learned"]))
        except (OSError, ValueError, KeyError, TypeError):
            self._templates.clear()
