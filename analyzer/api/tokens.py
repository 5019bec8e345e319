"""Who may write: the shared token and the per-site tokens, and the files the latter come from.

- A **site token** binds what it ships to its site: a shipment must name that site and a window
  whose path source is another site is refused and counted (`source-mismatch`). This is how
  the HTTP intake keeps one site from writing another's paths.
- The **shared token** (`--token-file`) is the operator's: it may always ask for probes, and it
  may ship for any site only while no site token is configured (one site, the lab, a test).
  Once sites have tokens, shipping needs them.

Tokens are compared in constant time: a given token's SHA-256 is looked up (timing then tells
nothing about any token's characters) and confirmed with `hmac.compare_digest`.

Site token files: a directory with one file per site, named after the site, holding its token;
or one file of `SITE TOKEN` lines (blank lines and `#` comments allowed). A token is at least
`MIN_SITE_TOKEN` characters without spaces, and no two sites share one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MIN_SITE_TOKEN = 16
MAX_TOKEN_FILE_BYTES = 1 << 20  # 2,800 sites x ~80 bytes a line, with room to spare
MAX_SITES = 100_000


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Writer:
    """Who a write came from: a site (its token) or the operator (the shared token, site None)."""

    site: str | None


@dataclass(frozen=True, slots=True)
class WriteTokens:
    shared: str | None = None
    by_site: Mapping[str, str] = field(default_factory=dict)
    _sites_by_digest: dict[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_digest = {}
        for site, token in self.by_site.items():
            if _digest(token) in by_digest or token == self.shared:
                raise ValueError(f"site {site!r} shares its token with another site or the shared token")
            by_digest[_digest(token)] = site
        object.__setattr__(self, "_sites_by_digest", by_digest)

    @property
    def configured(self) -> bool:
        return self.shared is not None or bool(self.by_site)

    def writer(self, given: str) -> Writer | None:
        """Whose token `given` is, or None when it is nobody's."""
        digest = _digest(given)
        if self.shared is not None and hmac.compare_digest(digest, _digest(self.shared)):
            return Writer(None)
        site = self._sites_by_digest.get(digest)
        if site is not None and hmac.compare_digest(given.encode(), self.by_site[site].encode()):
            return Writer(site)
        return None


def load_site_tokens(path: str | Path) -> dict[str, str]:
    """site -> token from a directory of per-site files or one `SITE TOKEN` file. Raises
    ValueError naming the file (and line) of any problem."""
    path = Path(path)
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if len(entries) > MAX_SITES:
            raise ValueError(f"{path}: more than {MAX_SITES} site token files")
        pairs = [(p.name, _read(p).strip(), str(p)) for p in entries]
    else:
        pairs = []
        for number, line in enumerate(_read(path).splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected 'SITE TOKEN'")
            pairs.append((parts[0], parts[1], f"{path}:{number}"))
    tokens: dict[str, str] = {}
    for site, token, where in pairs:
        if len(token) < MIN_SITE_TOKEN or any(c.isspace() for c in token):
            raise ValueError(f"{where}: the token of site {site!r} must be {MIN_SITE_TOKEN}+ characters without spaces")
        if site in tokens:
            raise ValueError(f"{where}: site {site!r} has a token already")
        tokens[site] = token
    if not tokens:
        raise ValueError(f"{path}: no site tokens")
    return tokens


def _read(path: Path) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ValueError(f"{path}: over {MAX_TOKEN_FILE_BYTES} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
