# The two commands of the README. Both set the machine up first (Debian packages, .venv).
.PHONY: run test setup

setup:
	./scripts/setup.sh

run: setup
	.venv/bin/xnetmon run

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)
