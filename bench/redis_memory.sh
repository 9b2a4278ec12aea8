#!/usr/bin/env bash
# Redis memory per logged-in session: latchkey serves with --session-store redis (its own
# key prefix on the machine's Redis), N logins of one user make N live sessions, and
# `INFO memory` before and after gives the bytes each costs (the session hash, its entry
# in the user's index set, Redis's per-key overhead and expiry). SCALING.md uses it.
#
#   bench/redis_memory.sh [SESSIONS]   (default 20000; Redis at 127.0.0.1:6379)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source bench/common.sh
sessions=${1:-20000}
prefix="scale$RANDOM"
cargo build --release -q --bin latchkey
LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
  "$root/target/release/latchkey" serve --bind 127.0.0.1:18310 --database-url "sqlite://$work/m.db" \
  --session-store redis://127.0.0.1:6379 --redis-prefix "$prefix" \
  --argon2-memory-kib 64 --argon2-iterations 1 --new-sessions-per-ip-hourly 100000000 \
  --login-ip-burst 100000000 --login-ip-hourly 100000000 >/dev/null 2>&1 &
pids+=($!)
wait_port 18310
used() { redis-cli -h 127.0.0.1 -p 6379 INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}'; }
session_cookie 18310 >/dev/null
before=$(used)
python3 - "$sessions" "$username" "$password" <<'PY'
import http.client, json, sys
count, name, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = json.dumps({"username": name, "password": password})
# What a browser sends (sessions keep the user agent for the sessions page).
agent = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/156.0.0.0 Safari/537.36")
def work(n):
    c = http.client.HTTPConnection("127.0.0.1", 18310)
    for _ in range(n):
        c.request("POST", "/login", body=body, headers={"Content-Type": "application/json", "User-Agent": agent})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
# One connection: logins of one account racing each other are refused (429) by the
# account throttle's compare-and-count, which is not what this measures.
work(count)
PY
after=$(used)
keys=$(redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$prefix:*" | wc -l)
# One key per session, plus the user's index set and the first login's session.
echo "sessions: $sessions, keys under $prefix: $keys"
echo "used_memory: $before -> $after bytes: $(( (after - before) / sessions )) bytes per logged-in session"
redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 DEL >/dev/null
