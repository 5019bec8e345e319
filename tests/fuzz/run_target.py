"""Fuzz targets under atheris (libFuzzer), coverage-guided over the project's code.

    PYTHONPATH=$PWD .venv/bin/python -m tests.fuzz.run_target NAME[,NAME...] WORKDIR [libFuzzer flags...]

Each target's committed corpus seeds its run; inputs the run finds go to WORKDIR/corpus
(never into the repository), a crashing input to WORKDIR/crash-<sha1>. libFuzzer prints its
progress (`cov:` edges, `ft:` features, `exec/s`) and, with -print_final_stats=1, the totals
on stderr. Exit status 0: no crash within the limits given (-runs=, -max_total_time=).

Several targets share one import of the instrumented code: each runs in a child forked
after it (libFuzzer ends the process it runs in), in WORKDIR/NAME, with its output in
WORKDIR/NAME/fuzz.log; the exit status is the first failing child's.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import atheris

# Instrument the project's modules as they are imported: the targets import every decoder.
with atheris.instrument_imports(include=["collector", "analyzer", "lab", "xnetmon"]):
    from tests.fuzz.targets import SCRATCH_ENV, TARGETS


def fuzz(name: str, workdir: Path, flags: list[str]) -> None:
    """Run one target in this process; libFuzzer exits it at the end."""
    target = TARGETS[name]
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    os.environ[SCRATCH_ENV] = str(workdir)  # files the targets write live and die with the run's directory
    logging.disable(logging.CRITICAL)  # decoders log what they skip; millions of lines would drown the run
    # libFuzzer writes new inputs into the first corpus directory and only reads the others.
    args = [sys.argv[0], f"-artifact_prefix={workdir}/", *flags, str(corpus), str(target.corpus)]
    if target.mutator is None:
        atheris.Setup(args, target.run)
    else:
        # looked up at each call: Fuzz() binds atheris.Mutate to libFuzzer's once it starts
        atheris.Setup(args, target.run, custom_mutator=target.mutator(lambda data, size: atheris.Mutate(data, size)))
    atheris.Fuzz()


def fuzz_in_children(names: list[str], workdir: Path, flags: list[str]) -> int:
    status = 0
    for name in names:
        target_dir = workdir / name
        target_dir.mkdir(parents=True, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            log = os.open(target_dir / "fuzz.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            try:
                fuzz(name, target_dir, flags)
            finally:
                os._exit(70)  # Fuzz() never returns; an exception before it must not run the parent's loop
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        print(f"{name}: exit status {code}", file=sys.stderr)
        status = status or code
    return status


def main(argv: list[str]) -> None:
    names = argv[1].split(",") if len(argv) >= 3 else []
    if not names or any(n not in TARGETS for n in names):
        sys.exit(f"usage: {argv[0]} TARGET[,TARGET...] WORKDIR [libFuzzer flags]; targets: {', '.join(TARGETS)}")
    workdir, flags = Path(argv[2]), argv[3:]
    if len(names) == 1:
        fuzz(names[0], workdir, flags)
    sys.exit(fuzz_in_children(names, workdir, flags))


if __name__ == "__main__":
    main(sys.argv)
