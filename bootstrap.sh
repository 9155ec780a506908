#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (as root):
#   ./bootstrap.sh demo   install everything, start the lab, run the demo patch campaign
#   ./bootstrap.sh test   install everything, run lint, type checks and the whole test suite
#   ./bootstrap.sh setup  install everything only
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-setup}"

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (the lab mounts overlays and creates network namespaces)" >&2
  echo "  fix: sudo ./bootstrap.sh $mode" >&2
  exit 2
fi

APT_PACKAGES=(
  python3 python3-venv python3-pip
  debootstrap systemd-container haproxy iproute2 util-linux
  openssh-client openssh-server dpkg-dev socat curl wrk ca-certificates
  rsyslog
)

setup() {
  export DEBIAN_FRONTEND=noninteractive
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing system packages: ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if [ ! -x .venv/bin/bluegreen ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "== creating the virtualenv (.venv) and installing bluegreen"
    [ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    # compat mode: a plain .pth path entry (the default editable finder costs ~20 ms per start)
    .venv/bin/pip install -q -e '.[dev]' --config-settings editable_mode=compat
    touch .venv/.installed
  fi
  # an editable install leaves our own modules uncompiled; with PYTHONDONTWRITEBYTECODE set
  # every start would compile them again (~60 ms of `bluegreen rollback`)
  .venv/bin/python -m compileall -q orchestrator >/dev/null
}

setup
export PATH="$PWD/.venv/bin:$PATH"
case "$mode" in
  setup) echo "ready: .venv/bin/bluegreen --help" ;;
  demo) exec bluegreen lab demo ;;
  test)
    echo "== ruff"; ruff check orchestrator tests benchmarks
    echo "== mypy"; mypy
    echo "== import-linter (layers, see pyproject.toml)"; lint-imports --no-cache
    echo "== pytest"; exec pytest -p no:cacheprovider "${@:2}"
    ;;
  *) echo "usage: $0 demo|test|setup" >&2; exit 2 ;;
esac
