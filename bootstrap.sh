#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (as root):
#   ./bootstrap.sh demo   install everything, start the lab, run the demo patch campaign
#   ./bootstrap.sh test   install everything, run lint, type checks and the whole test suite
#   ./bootstrap.sh setup  install everything only
#   ./bootstrap.sh postgres  install everything, start the local PostgreSQL server (team mode)
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-setup}"
# bluegreen refuses trusted files (configs, inventories, playbooks) that others can write,
# up to / (orchestrator/trust.py): nothing made here is group- or world-writable
umask 022

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (the lab mounts overlays and creates network namespaces)" >&2
  echo "  fix: sudo ./bootstrap.sh $mode" >&2
  exit 2
fi

APT_PACKAGES=(
  python3 python3-venv python3-pip
  debootstrap systemd-container haproxy nginx prometheus iproute2 util-linux
  openssh-client openssh-server dpkg-dev socat curl wrk ca-certificates
  rsyslog chromium chromium-driver
  gpgv gnupg debian-archive-keyring zstd
  postgresql
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

# Debian's PostgreSQL cluster for team mode and its tests. PID 1 is not always systemd (CI,
# containers): the cluster is started with pg_ctlcluster, never systemctl. The role named
# like this OS user (root) may create the throwaway databases of the tests.
postgres_up() {
  local version
  version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
    pg_createcluster "$version" main >/dev/null
  fi
  if ! pg_ctlcluster "$version" main status >/dev/null 2>&1; then
    echo "== starting PostgreSQL $version (cluster main)"
    pg_ctlcluster "$version" main start
  fi
  local me
  me="$(id -un)"
  if [ "$(su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = '$me'\"")" != 1 ]; then
    su postgres -c "psql -qc 'CREATE ROLE \"$me\" SUPERUSER LOGIN'"
  fi
}

setup
export PATH="$PWD/.venv/bin:$PATH"
case "$mode" in
  setup) echo "ready: .venv/bin/bluegreen --help" ;;
  postgres) postgres_up; echo "PostgreSQL ready: psql -d postgres (as $(id -un))" ;;
  demo) exec bluegreen lab demo ;;
  test)
    postgres_up  # the state store's tests run against both backends
    # the checkout itself must pass bluegreen's trusted-files rule (a clone made under
    # umask 002 would not); a writable directory above it is named, not changed
    chmod -R go-w . 2>/dev/null || true
    dir="$PWD"
    while [ "$dir" != "/" ]; do
      dir="$(dirname "$dir")"
      if [ -n "$(find "$dir" -maxdepth 0 -perm /022 ! -perm -1000)" ]; then
        echo "warning: $dir is writable by group or others: bluegreen refuses the playbooks" \
          "and configs under it (chmod go-w $dir)" >&2
      fi
    done
    echo "== ruff"; ruff check orchestrator tests benchmarks
    echo "== mypy"; mypy
    echo "== import-linter (layers, see pyproject.toml)"; lint-imports --no-cache
    echo "== pytest"; exec pytest -p no:cacheprovider --durations=25 "${@:2}"
    ;;
  *) echo "usage: $0 demo|test|setup|postgres" >&2; exit 2 ;;
esac
