#!/usr/bin/env bash
# Developer entry point: set up, run the demo, run the tests.
#
#   scripts/dev.sh demo    set everything up, start 3 local nodes, generate through a pipeline
#                          spanning them (vramancer-node demo; options pass through)
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
      apt_install python3-venv  # the .deb's venv is built from /usr/bin/python3
      command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
      command -v lintian >/dev/null 2>&1 || apt_install lintian
      # a C compiler for the mypyc-compiled membership core (simulations/compiled_core.py)
      command -v cc >/dev/null 2>&1 || apt_install gcc
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
  install_promtool
  # the mypyc-compiled membership core of simulations/membership.py (once per source version)
  "$PY" simulations/compiled_core.py
}

install_promtool() {
  # promtool (metrics and alert-rule checks in the suite) from Debian's prometheus
  # package, unpacked into the venv: never installed as a package, never run as a server.
  [ -x "$VENV/bin/promtool" ] && return 0
  command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || return 0
  local tmp
  tmp=$(mktemp -d)
  say "fetching promtool (apt-get download prometheus)"
  if (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    install -m 0755 "$tmp/x/usr/bin/promtool" "$VENV/bin/promtool"
  else
    say "could not download prometheus (apt-get update first?); the promtool tests will say so"
  fi
  rm -rf "$tmp"
}

demo() {  # demo [vramancer-node demo options]: a local 3-node cluster, one pipelined generation
  say "vramancer-node demo $*"
  "$VENV/bin/vramancer-node" demo "$@"
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
  demo) setup; demo "$@" ;;
  lint) setup; gates ;;
  test)
    setup
    gates
    say "pytest (warnings are errors)"
    "$VENV/bin/python" -m pytest -W error "$@"
    ;;
  *) echo "usage: scripts/dev.sh demo [demo options]|test [pytest args]|setup|lint" >&2; exit 1 ;;
esac
