"""One fuzz target under atheris (libFuzzer), coverage-guided over the project's code.

    PYTHONPATH=$PWD .venv/bin/python -m tests.fuzz.run_target NAME WORKDIR [libFuzzer flags...]

The target's committed corpus seeds the run; inputs the run finds go to WORKDIR/corpus
(never into the repository), a crashing input to WORKDIR/crash-<sha1>. libFuzzer prints
its progress (`cov:` edges, `ft:` features, `exec/s`) and, with -print_final_stats=1, the
totals on stderr. Exit status 0: no crash within the limits given (-runs=, -max_total_time=).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import atheris

# Instrument the project's modules as they are imported: the targets import every decoder.
with atheris.instrument_imports(include=["collector", "analyzer", "lab", "xnetmon"]):
    from tests.fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} TARGET WORKDIR [libFuzzer flags]; targets: {', '.join(TARGETS)}")
    target, workdir = TARGETS[argv[1]], Path(argv[2])
    logging.disable(logging.CRITICAL)  # decoders log what they skip; millions of lines would drown the run
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    # libFuzzer writes new inputs into the first corpus directory and only reads the others.
    args = [argv[0], f"-artifact_prefix={workdir}/", *argv[3:], str(corpus), str(target.corpus)]
    atheris.Setup(args, target.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
