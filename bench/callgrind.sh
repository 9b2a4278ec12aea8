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
per_request() {  # port cookie label
  local port=$1 cookie=$2 label=$3 pid=$4
  python3 - "$port" "$cookie" 200 <<'PY'
import http.client, sys
port, cookie, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", "/home", headers={"Cookie": cookie, "Accept": "application/json"})
    r = c.getresponse(); r.read()
PY
  callgrind_control -z "$pid" >/dev/null
  python3 - "$port" "$cookie" 2000 <<'PY'
import http.client, sys
port, cookie, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", "/home", headers={"Cookie": cookie, "Accept": "application/json"})
    r = c.getresponse(); assert r.status == 200, r.status; r.read()
PY
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  local file
  file=$(ls -t "$work"/callgrind.out.$pid* | head -1)
  local total
  total=$(grep -E "^(summary|totals):" "$file" | head -1 | awk '{print $2}')
  echo "$label: $((total / 2000)) instructions per request"
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
per_request 18300 "$(bare_cookie)" "bare axum" "$bare"
per_request 18301 "$cookie" "latchkey memory" "$lk"
