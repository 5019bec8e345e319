"""`python -m dashboards`: regenerate dashboards/generated/ from the SLA policies.

python -m dashboards                                  # from analyzer/policies.yaml
python -m dashboards --policies my.yaml --out DIR     # another policy file, elsewhere
python -m dashboards --check                          # exit 1 if the committed files are stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analyzer.sla.policies import DEFAULT_POLICY_FILE, ConfigError
from dashboards.build import GENERATED_DIR, build, stale, write
from dashboards.config import DEFAULT_RUNBOOK_BASE_URL, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=Path, default=DEFAULT_POLICY_FILE, help="SLA policy file (YAML)")
    parser.add_argument("--out", type=Path, default=GENERATED_DIR, help="where to write (default: %(default)s)")
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="Prometheus' scrape interval; the total-loss alert looks back three of them",
    )
    parser.add_argument(
        "--runbook-base-url",
        default=DEFAULT_RUNBOOK_BASE_URL,
        help="where the runbooks are browsed (default: the repository path %(default)s)",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file is stale")
    args = parser.parse_args(argv)
    try:
        config = load_config(
            args.policies, scrape_interval_s=args.scrape_interval, runbook_base_url=args.runbook_base_url
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    files = build(config)
    if args.check:
        outdated = stale(files, args.out)
        for name in outdated:
            print(f"stale: {args.out / name}", file=sys.stderr)
        return 1 if outdated else 0
    for path in write(files, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
