#!/usr/bin/env bash
# Developer entry point: set up, run the demo, run the tests.
#
#   scripts/dev.sh demo    set everything up, start a node, show its status, stop it
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

demo() {
  local state log pid
  state=$(mktemp -d /tmp/vramancer-demo.XXXXXX)
  log="$state/node.log"
  say "starting a node: vramancer-node join --state-dir $state --preset local"
  "$VENV/bin/vramancer-node" join --state-dir "$state" --preset local --log-format text \
    >"$log" 2>&1 &
  pid=$!
  trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$state"' EXIT
  for _ in $(seq 1 100); do
    [ -S "$state/api.sock" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; say "the node did not start"; exit 1; }
    sleep 0.1
  done
  say "vramancer --state-dir $state status"
  "$VENV/bin/vramancer" --state-dir "$state" status
  say "vramancer --state-dir $state status --json"
  "$VENV/bin/vramancer" --state-dir "$state" status --json
  say "stopping the node (SIGTERM)"
  kill -TERM "$pid"
  wait "$pid"
  trap 'rm -rf "$state"' EXIT
  cat "$log" >&2
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
