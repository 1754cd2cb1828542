#!/usr/bin/env bash
# Installs the system packages the test suite needs (Debian, as root) and starts services that are down.
set -euo pipefail

need_packages=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

packages() {
  # wrk: bench/http.py's load generator (`make bench`).
  for pkg in openssh-server sudo chromium redis-server postgresql wrk; do
    if ! have "$pkg"; then need_packages+=("$pkg"); fi
  done
  # PostgreSQL may come from elsewhere on this kind of machine: a running server is enough.
  if printf '%s\n' "${need_packages[@]:-}" | grep -qx postgresql && command -v pg_ctlcluster >/dev/null; then
    need_packages=("${need_packages[@]/postgresql}")
  fi
  local wanted=()
  for pkg in "${need_packages[@]:-}"; do [ -n "$pkg" ] && wanted+=("$pkg"); done
  [ ${#wanted[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "The tests need these Debian packages: ${wanted[*]}. Run as root, or: sudo apt-get install ${wanted[*]}" >&2
    exit 1
  fi
  echo "Installing ${wanted[*]} ..."
  # Keep apt from starting a system sshd or other daemons during the install.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

services() {
  if ! port_open 5432; then
    echo "Starting PostgreSQL ..."
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  if ! port_open 6379; then
    echo "Starting Redis ..."
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/intercity-test.log
  fi
  for _ in $(seq 50); do port_open 5432 && port_open 6379 && break; sleep 0.2; done
  # The tests' own database: trust auth on loopback is this machine's setup.
  psql -h 127.0.0.1 -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -d postgres -c "CREATE DATABASE test" >/dev/null
  mkdir -p /run/sshd
}

"$@"
