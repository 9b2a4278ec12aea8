#!/usr/bin/env bash
# callgrind instructions per `GET /home`, bare axum and latchkey on the memory store: each
# server runs under valgrind, gets 200 keep-alive requests to warm up, then 2,000 counted
# ones (Python http.client); the total is divided by 2,000. Needs the release builds
# (bench/run.sh makes them) and valgrind.
#
#   bench/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source bench/common.sh
source bench/callgrind_common.sh
# home_requests PORT COOKIE COUNT: COUNT keep-alive `GET /home`s with COOKIE, each a 200.
home_requests() {
  python3 - "$@" <<'PY'
import http.client, sys
port, cookie, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", "/home", headers={"Cookie": cookie, "Accept": "application/json"})
    r = c.getresponse(); assert r.status == 200, r.status; r.read()
PY
}
cd "$work"
LATCHKEY_BENCH_USERNAME=$username LATCHKEY_BIND=127.0.0.1:18300 valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" \
  "$root/target/release/examples/bare_axum" >/dev/null 2>&1 &
bare=$!; pids+=($bare)
LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" \
  "$root/target/release/latchkey" serve --bind 127.0.0.1:18301 --database-url "sqlite://$work/cg.db" --session-store memory >/dev/null 2>&1 &
lk=$!; pids+=($lk)
cd "$root"
for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/18301) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/18300) 2>/dev/null && break; sleep 0.1; done
cookie=$(session_cookie 18301)
per_request "bare axum" "$bare" "$work/callgrind.out.$bare" -- home_requests 18300 "$(bare_cookie)"
per_request "latchkey memory" "$lk" "$work/callgrind.out.$lk" -- home_requests 18301 "$cookie"
