#!/usr/bin/env bash
# Starts PgBouncer (Debian's pgbouncer 1.18, installed if missing) in transaction pooling
# mode in front of the PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`), on a
# free port, as a daemon with its config, pid and log in a fresh temporary directory.
# Its server pool is 4 connections, so tests share server connections for real.
# Prints the lines to eval:  export LATCHKEY_TEST_PGBOUNCER=postgres://… and
# LATCHKEY_TEST_PGBOUNCER_DIR (its files).
# Usage: eval "$(.ci/pgbouncer.sh)"; stop it with: kill "$(cat <dir>/pgbouncer.pid)"
# (the directory is printed on stderr).
set -euo pipefail

if [ ! -x /usr/sbin/pgbouncer ]; then
  echo "== installing pgbouncer" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y pgbouncer >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y pgbouncer >/dev/null; }
fi

dir="$(mktemp -d /tmp/latchkey-pgbouncer.XXXXXX)"
# A port nothing listens on (asked of the kernel).
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

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
default_pool_size = 4
max_client_conn = 1000
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
$run_as
INI

/usr/sbin/pgbouncer -d -q "$dir/pgbouncer.ini"
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "pgbouncer did not start; its log:" >&2
  cat "$dir/pgbouncer.log" >&2 || true
  exit 1
fi
echo "== pgbouncer (transaction pooling, 4 server connections) on 127.0.0.1:$port, pid $(cat "$dir/pgbouncer.pid"), files in $dir" >&2
echo "export LATCHKEY_TEST_PGBOUNCER=postgres://postgres@127.0.0.1:$port/test"
echo "export LATCHKEY_TEST_PGBOUNCER_DIR=$dir"
