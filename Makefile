# The two commands of the README. Both set the machine up first (Debian packages, .venv).
.PHONY: run test test-under-load setup

setup:
	./scripts/setup.sh

run: setup
	.venv/bin/xnetmon run

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The whole suite beside a CPU hog on every core (stress-ng, from setup): tests wait on
# events, never on the clock, so they pass on a loaded machine too. Prints the wall time.
test-under-load: setup
	stress-ng --cpu $$(nproc) --timeout 3h --quiet & hog=$$!; trap 'kill $$hog; wait $$hog' EXIT; started=$$(date +%s); \
	XNETMON_FORBID_SKIPS=$${XNETMON_FORBID_SKIPS:-1} .venv/bin/python -m pytest $(PYTEST_ARGS); status=$$?; \
	echo "test-under-load: pytest exit $$status after $$(( $$(date +%s) - started )) s beside stress-ng --cpu $$(nproc)"; \
	exit $$status
