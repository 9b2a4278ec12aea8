#!/usr/bin/env bash
# callgrind instructions per request of `latchkey serve` on the memory store with access
# rules: GET /home, GET /auth/forward and GET /auth/nginx with one session cookie. One
# process under valgrind; per target 200 keep-alive requests to warm up, then 2,000
# counted ones; the total is divided by 2,000. Instructions, not seconds: the figures
# repeat whatever else the machine does. KEEP=1 keeps the callgrind files (for
# callgrind_annotate).
#
#   bench/callgrind_forward.sh       (needs valgrind; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -j2 --release -p latchkey-server --bin latchkey >&2
work=$(mktemp -d)
port=18310
printf '[[rule]]\nhost = "app.localhost"\nschemes = ["http"]\npolicy = "one_factor"\n' >"$work/rules.toml"
LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
  valgrind --tool=callgrind --callgrind-out-file="$work/out.%p" \
  target/release/latchkey serve --bind "127.0.0.1:$port" \
  --database-url "sqlite://$work/forward.db" --session-store memory \
  --access-rules "$work/rules.toml" --trusted-proxy 127.0.0.1 \
  --argon2-memory-kib 64 --argon2-iterations 1 >"$work/latchkey.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
python3 - "$port" "$work/cookie" <<'PY'
import http.client, json, sys
port, out = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"username": "forward", "password": "correct horse battery staple"})
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for path in ("/signup", "/login"):
    c.request("POST", path, body=body, headers={"content-type": "application/json"})
    r = c.getresponse(); r.read()
cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("id=")]
open(out, "w").write(cookie[0].split(";")[0])
PY
cookie=$(cat "$work/cookie")
requests() {  # target count
  python3 - "$port" "$cookie" "$1" "$2" <<'PY'
import http.client, sys
port, cookie, target, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
headers = {"Cookie": cookie}
path = {"home": "/home", "forward": "/auth/forward", "nginx": "/auth/nginx"}[target]
if target == "home":
    headers["Accept"] = "application/json"
elif target == "forward":
    headers.update({"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http",
                    "X-Forwarded-Host": "app.localhost", "X-Forwarded-Uri": "/dashboard"})
else:
    headers.update({"X-Original-URL": "http://app.localhost/dashboard", "X-Original-Method": "GET"})
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(count):
    c.request("GET", path, headers=headers)
    r = c.getresponse(); assert r.status == 200, (target, r.status, r.read()); r.read()
PY
}
source bench/callgrind_common.sh
for target in home forward nginx; do
  per_request "$target" "$server" "$work/out." -- requests "$target"
done
