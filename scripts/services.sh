#!/usr/bin/env bash
# What the test suite needs besides Python: PostgreSQL and Redis on 127.0.0.1 (started when they are down),
# Java 17+ for the Spark tests and Debian's headless Chromium for the browser tests. What is missing is
# installed with apt-get where that is possible (root on Debian or Ubuntu); otherwise one line says what to do
# and the script exits 1. Safe to run again.
#
# RFMSEG_TEST_POSTGRES_URL / RFMSEG_TEST_REDIS_URL: the tests use that server instead, and it is left alone here.
set -euo pipefail

fail() {
  echo "services.sh: $*" >&2
  exit 1
}

is_root() { [ "$(id -u)" = 0 ]; }

apt_ready=""
install_or_say() { # install_or_say WHAT PACKAGE...: apt-get install, or one line saying how
  local what=$1
  shift
  if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
    fail "$what is missing: install it (Debian/Ubuntu: sudo apt-get install -y $*), or run make test as root where apt-get can"
  fi
  echo "installing $what: apt-get install $*"
  if [ -z "$apt_ready" ]; then
    apt-get update -qq
    apt_ready=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------- PostgreSQL
if [ -z "${RFMSEG_TEST_POSTGRES_URL:-}" ]; then
  if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    install_or_say PostgreSQL postgresql postgresql-client
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null 2>&1 \
      || fail "PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster (Debian's postgresql-common) is not here to start it: start it yourself, or set RFMSEG_TEST_POSTGRES_URL to a server the tests may use"
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    [ -n "$version" ] \
      || fail "PostgreSQL has no cluster in /etc/postgresql: create one (sudo pg_createcluster --start 16 main, with your version), or set RFMSEG_TEST_POSTGRES_URL"
    is_root || fail "PostgreSQL is not running on 127.0.0.1:5432: start it (sudo pg_ctlcluster $version main start), or set RFMSEG_TEST_POSTGRES_URL"
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -q -h 127.0.0.1 -p 5432 || fail "PostgreSQL $version did not start in 30 s: see /var/log/postgresql/"
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -w -tAc "SELECT 1" >/dev/null 2>&1 \
    || fail "cannot connect to PostgreSQL on 127.0.0.1:5432 as user postgres without a password: for a test-only server allow it ('host all postgres 127.0.0.1/32 trust' in pg_hba.conf), or set RFMSEG_TEST_POSTGRES_URL=postgresql://USER:PASSWORD@HOST:PORT/DB"
  psql -h 127.0.0.1 -U postgres -d postgres -w -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -w -qc "CREATE DATABASE test"
fi

# ---------------------------------------------------------------------------------------------- Redis
if [ -z "${RFMSEG_TEST_REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    install_or_say Redis redis-server redis-tools
  fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "starting Redis"
    if is_root; then
      dir=/var/lib/redis
      log=/var/log/redis/ci.log
      mkdir -p "$dir" /var/log/redis
    else
      dir=$(mktemp -d "${TMPDIR:-/tmp}/rfmseg-redis.XXXXXX")
      log="$dir/redis.log"
    fi
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir "$dir" --logfile "$log"
    for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || fail "Redis did not start in 30 s: see $log"
  fi
fi

# ---------------------------------------------------------------------------------------------- Java 17+
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  install_or_say "Java 17 or newer (for the Spark tests)" default-jre-headless
  [ "$(java_major)" -ge 17 ] 2>/dev/null \
    || fail "Java $(java_major) is installed but the Spark tests need 17 or newer: install openjdk-17-jre-headless (or newer) and put it first on PATH"
fi

# ---------------------------------------------------------------------------------------------- Chromium
if [ ! -x /usr/bin/chromium ]; then
  install_or_say "Chromium at /usr/bin/chromium (for the browser tests)" chromium
fi
