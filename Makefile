# The two commands of the README. Both set the machine up first (Debian packages, .venv).
.PHONY: run test test-under-load setup lint format lock

setup:
	./scripts/setup.sh

run: setup
	.venv/bin/xnetmon run

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# For developers, and the first step of CI: ruff (lint, then the format check) and mypy.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Apply ruff's safe fixes and the project's format to the tree.
format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

# Refresh requirements.lock after a change to the dependencies in pyproject.toml. Pins that
# still fit are kept; LOCK_ARGS="--upgrade" (or "--upgrade-package NAME") moves them on.
# pip-tools runs in a throwaway venv so that it never lands in .venv.
PIP_TOOLS := pip-tools==7.7.0
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	python3 -m venv "$$tmp" && "$$tmp/bin/pip" install -q "$(PIP_TOOLS)" && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tmp/bin/pip-compile" --quiet --generate-hashes --extra test \
		--strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements.lock \
		$(LOCK_ARGS) pyproject.toml

# The whole suite beside a CPU hog on every core (stress-ng, from setup): tests wait on
# events, never on the clock, so they pass on a loaded machine too. Prints the wall time.
test-under-load: setup
	stress-ng --cpu $$(nproc) --timeout 3h --quiet & hog=$$!; trap 'kill $$hog; wait $$hog' EXIT; started=$$(date +%s); \
	XNETMON_FORBID_SKIPS=$${XNETMON_FORBID_SKIPS:-1} .venv/bin/python -m pytest $(PYTEST_ARGS); status=$$?; \
	echo "test-under-load: pytest exit $$status after $$(( $$(date +%s) - started )) s beside stress-ng --cpu $$(nproc)"; \
	exit $$status
