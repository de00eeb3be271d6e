#!/usr/bin/env bash
# Developer entry point: set up, run the demo, run the tests.
#
#   scripts/dev.sh demo    set everything up, found a cluster, join a second node, show both
#   scripts/dev.sh test    set everything up, run every quality gate and the test suite
#   scripts/dev.sh setup   only set up (.venv with the package, its test tools, CPU torch)
#
# Setup is idempotent and quick when nothing changed: the venv is reinstalled only
# when pyproject.toml or constraints-cpu.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  # Install missing Debian/Ubuntu packages when we can (root, or sudo without a password).
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      say "please install: ${missing[*]} (apt-get install ${missing[*]})"; return 1
    fi
  fi
  say "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup() {
  if command -v dpkg >/dev/null 2>&1; then
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    # iproute2 for the network-namespace tests (only where we may install: root/sudo)
    if [ "$(id -u)" -eq 0 ] && ! command -v ip >/dev/null 2>&1; then apt_install iproute2; fi
    # systemd-analyze and lintian for the packaging tests (tests/packaging), same rule
    if [ "$(id -u)" -eq 0 ]; then
      command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
      command -v lintian >/dev/null 2>&1 || apt_install lintian
    fi
  fi
  if [ ! -x "$PY" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp
  stamp="$VENV/.installed-$(cat pyproject.toml constraints-cpu.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing vramancer-node and its test tools into $VENV (CPU torch)"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -c constraints-cpu.txt -e '.[test]'
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

start_node() {  # start_node NAME STATE_DIR [join args...]: background node, waits for its API
  local name=$1 state=$2
  shift 2
  "$VENV/bin/vramancer-node" join --state-dir "$state" --preset local --name "$name" \
    --listen 127.0.0.1:0 --log-format text "$@" >"$state.out" 2>"$state.log" &
  echo $! >"$state.pid"
  for _ in $(seq 1 150); do
    [ -S "$state/api.sock" ] && "$VENV/bin/vramancer" --state-dir "$state" status --json 2>/dev/null \
      | grep -q '"state": "running"' && return 0
    kill -0 "$(cat "$state.pid")" 2>/dev/null || { cat "$state.out" "$state.log" >&2; say "$name did not start"; exit 1; }
    sleep 0.1
  done
  say "$name did not start within 15 s"; exit 1
}

stop_node() {
  local state=$1 pid
  pid=$(cat "$state.pid" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -f "$state.pid"
}

demo() {
  local token address
  root=$(mktemp -d /tmp/vramancer-demo.XXXXXX)
  founder="$root/founder"
  joiner="$root/joiner"
  trap 'stop_node "${joiner:-}"; stop_node "${founder:-}"; rm -rf "${root:-}"' EXIT
  say "node 1 founds a cluster: vramancer-node join --name founder"
  start_node founder "$founder"
  cat "$founder.out"
  token=$(grep -o 'vrm1\.[^ ]*' "$founder.out")
  address=$("$VENV/bin/vramancer" --state-dir "$founder" status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["listening"][0])')
  say "node 2 joins it: vramancer-node join --name joiner --peer $address --token <token>"
  start_node joiner "$joiner" --peer "$address" --token "$token"
  say "vramancer status (node 1)"
  "$VENV/bin/vramancer" --state-dir "$founder" status
  say "vramancer status --json (node 2)"
  "$VENV/bin/vramancer" --state-dir "$joiner" status --json
  say "stopping both nodes (SIGTERM)"
  stop_node "$joiner"
  stop_node "$founder"
  say "node 2's log"
  cat "$joiner.log" >&2
  say "demo finished"
}

gates() {
  say "ruff check"
  "$VENV/bin/ruff" check .
  say "ruff format --check"
  "$VENV/bin/ruff" format --check .
  say "mypy --strict protocol crypto"
  "$VENV/bin/mypy" --strict protocol crypto
}

cmd=${1:-}
shift || true
case "$cmd" in
  setup) setup ;;
  demo) setup; demo ;;
  lint) setup; gates ;;
  test)
    setup
    gates
    say "pytest (warnings are errors)"
    "$VENV/bin/python" -m pytest -W error "$@"
    ;;
  *) echo "usage: scripts/dev.sh demo|test|setup|lint [pytest args]" >&2; exit 1 ;;
esac
