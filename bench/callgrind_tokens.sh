#!/usr/bin/env bash
# callgrind instructions per `GET /home` on the SQLite store of the bench binary
# (benches/home_throughput.rs, BENCH_SERVE_ONLY=1), asked with the session cookie, a
# personal access token and a bearer session: one process under valgrind, 200 keep-alive
# requests per credential to warm up, then 2,000 counted ones; the total is divided by
# 2,000. Instructions, not seconds: the figures repeat whatever else the machine does.
#
#   bench/callgrind_tokens.sh        (needs valgrind; builds the bench binary)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -j"${CARGO_BUILD_JOBS:-2}" --bench home_throughput --no-run 2>/dev/null
binary=$(ls -t target/release/deps/home_throughput-* | grep -v '\.d$' | head -n1)
work=$(mktemp -d)
BENCH_SERVE_ONLY=1 valgrind --tool=callgrind --callgrind-out-file="$work/out.%p" \
  "$binary" --bench >"$work/addresses" 2>"$work/valgrind.log" &
server=$!
trap 'kill $server 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 300); do grep -q '^bearer' "$work/addresses" 2>/dev/null && break; sleep 0.2; done
requests() {  # address header count
  python3 - "$1" "$2" "$3" <<'PY'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
name, value = sys.argv[2].split(": ", 1)
c = http.client.HTTPConnection(host, int(port))
for _ in range(int(sys.argv[3])):
    c.request("GET", "/home", headers={name: value, "Accept": "application/json"})
    r = c.getresponse(); assert r.status == 200, r.status; r.read()
PY
}
source bench/callgrind_common.sh
for row in sqlite token bearer; do
  line=$(grep "^$row " "$work/addresses")
  address=$(awk '{print $2}' <<<"$line")
  header=$(cut -d' ' -f3- <<<"$line")
  per_request "$row" "$server" "$work/out." -- requests "$address" "$header"
done
