#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine for xnetmon: the Debian tools the monitor and its
# tests drive for real, then a virtual environment with the project installed.
# Idempotent: a second run only checks and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  iproute2       # ip netns / veth / tc: the lab
  iputils-ping   # ping: the RTT peer in benchmarks and lab checks
  iptables       # ip6tables: lab fault injection (loss, slice marking)
  nftables
  iperf3         # background load for lab congestion
  tshark         # independent STAMP decoder in interoperability tests
  traceroute     # traceroute -6: the peer our Paris traceroute's hop lists are checked against
  fping          # fping -6: the peer of the echo prober in bench/icmp_echo_scale.py
  prometheus-smokeping-prober  # smokeping_prober (binary prometheus-smokeping-prober): the peer in bench/agent_scale.py
  prometheus     # the real scraper in tests/integration: each test starts its own on a loopback port
  prometheus-alertmanager  # alert routing in tests/integration; amtool checks dashboards/alertmanager.yml
  softflowd      # a real IPFIX / NetFlow v9 exporter for the flow receiver's tests
  pmacct         # pmacctd + nfprobe: a second, independent exporter
  nfdump         # nfcapd: the peer in bench/ipfix_decode.py
  procps
  stress-ng      # the CPU hog of `make test-under-load`: the suite must pass beside it
  nats-server    # the bus (NATS JetStream) between agents and analyzers; tests start their own
  victoria-metrics  # long-term metrics: Prometheus remote-writes to it; tests start their own
  chromium       # headless: the console's end-to-end tests drive it through Playwright (no downloaded browser)
  fonts-wqy-zenhei  # a CJK font, so the console's Chinese labels render in headless Chromium's screenshots
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  # tshark asks whether non-root users may capture; answer once, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian starts system-wide daemons for some of these packages (prometheus on :9090,
# alertmanager on :9093, nfcapd, pmacctd, softflowd). Nothing in xnetmon uses them: tests
# start their own on loopback ports with temporary configs, so keep the daemons stopped.
SYSTEM_DAEMONS=(prometheus prometheus-alertmanager nfdump pmacctd softflowd nats-server victoria-metrics)
for service in "${SYSTEM_DAEMONS[@]}"; do
  if [ -d /run/systemd/system ]; then
    if systemctl is-enabled --quiet "$service.service" 2>/dev/null || systemctl is-active --quiet "$service.service"; then
      as_root systemctl disable --now "$service.service" >/dev/null 2>&1 || true
    fi
  elif [ -x "/etc/init.d/$service" ]; then  # sysvinit: the script knows its own pid file
    as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
  fi
done

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# The exact versions (and hashes) the tests passed with come from requirements.lock
# (`make lock` refreshes it from pyproject.toml); the project itself goes on top without
# dependencies. Reinstall only when the lock or the project's metadata changed.
stamp="$VENV/.xnetmon-installed"
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q --require-hashes -r requirements.lock
  "$VENV/bin/pip" install -q --no-deps -e .
  touch "$stamp"
fi

# The operations console (console/): its npm packages from the lock file and its build into
# console/dist, which the analyzer serves at /ui/. The build is committed too, so an analyzer
# host without Node.js still serves the console; with npm (Node.js 20 or later) it is rebuilt here.
if command -v npm >/dev/null 2>&1; then
  (cd console && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build >/dev/null)
else
  echo "setup: npm not found: the console is served from its committed build (console/dist)"
fi
