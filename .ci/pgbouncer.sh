#!/usr/bin/env bash
# Starts PgBouncer (Debian's pgbouncer 1.18, installed if missing) in transaction pooling
# mode in front of the PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`), on a
# free port of 12000-12999 (apart from every other range the tests use: see the
# allocation on `free_address` in crates/latchkey-server/tests/common/mod.rs), in the
# background with its config, pid and log in a fresh temporary directory.
# Its server pool is 4 connections, so tests share server connections for real.
# Prints the lines to eval:  export LATCHKEY_TEST_PGBOUNCER=postgres://… and
# LATCHKEY_TEST_PGBOUNCER_DIR (its files).
# Usage: eval "$(.ci/pgbouncer.sh [--ignore-startup-parameters LIST] [--pool-size N])"
#   stop it with: kill "$(cat <dir>/pgbouncer.pid)" (the directory is printed on stderr).
# --ignore-startup-parameters sets PgBouncer's `ignore_startup_parameters` (say
# `extra_float_digits`, which sqlx sends unless told not to): without it, a client that
# sends one is refused at connect. --pool-size sets the server pool (default 4).
set -euo pipefail
source "$(dirname "$0")/ports.sh"

ignore="" pool_size=4
while [[ $# -gt 0 ]]; do
  case $1 in
    --ignore-startup-parameters) ignore="ignore_startup_parameters = ${2:?$1 LIST}"; shift 2 ;;
    --pool-size) pool_size=${2:?$1 N}; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ ! -x /usr/sbin/pgbouncer ]; then
  echo "== installing pgbouncer" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y pgbouncer >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y pgbouncer >/dev/null; }
fi

first=12000 last=12999
check_outside_ephemeral "$first" "$last"
dir="$(mktemp -d /tmp/latchkey-pgbouncer.XXXXXX)"

# PgBouncer will not run as root: as root, it switches to `user` after start-up, so
# that user must be able to write the directory.
run_as=""
if [ "$(id -u)" = 0 ]; then
  run_as="user = postgres"
  getent passwd postgres >/dev/null || run_as="user = nobody"
  chown "${run_as#user = }" "$dir"
fi

# trust: PgBouncer asks no password; the user must still be in the auth_file.
echo '"postgres" ""' > "$dir/userlist.txt"

# On a port nothing listens on; ready when PgBouncer itself listens there (another
# process could have taken the port meanwhile: then PgBouncer exits, and it starts again
# on another port).
for _ in 1 2 3 4 5; do
  port=$((first + RANDOM % (last - first + 1)))
  accepts "$port" && continue
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
test = host=127.0.0.1 port=5432 dbname=test

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = 1000
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
$ignore
$run_as
INI
  # In the background rather than -d, so that its pid is known and its exit seen at
  # once; its output goes to its log, not to this script's.
  /usr/sbin/pgbouncer -q "$dir/pgbouncer.ini" </dev/null >/dev/null 2>&1 &
  pid=$!
  if wait_for_listener "$pid" 10 "$port"; then
    echo "$pid" > "$dir/pgbouncer.pid"
    echo "== pgbouncer (transaction pooling, $pool_size server connections${ignore:+, $ignore}) on 127.0.0.1:$port, pid $pid, files in $dir" >&2
    echo "export LATCHKEY_TEST_PGBOUNCER=postgres://postgres@127.0.0.1:$port/test"
    echo "export LATCHKEY_TEST_PGBOUNCER_DIR=$dir"
    exit 0
  fi
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pgbouncer.pid"
  echo "pgbouncer did not start on $port (retrying elsewhere); its log:" >&2
  tail -n 5 "$dir/pgbouncer.log" >&2 2>/dev/null || true
done
echo "pgbouncer would not start (see $dir)" >&2
exit 1
