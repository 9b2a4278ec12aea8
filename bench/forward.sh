#!/usr/bin/env bash
# Forward authentication (issue 28) in one run, servers on core 0, wrk on core 1,
# targets alternated round by round, medians reported:
#
#  1. `latchkey serve` on the memory store with access rules: GET /auth/forward (Caddy's
#     and Traefik's question, X-Forwarded-* headers) and GET /auth/nginx (nginx's,
#     X-Original-URL) against GET /home, the same session cookie, the same process.
#  2. Through nginx (Debian's nginx-light, one worker): an app behind auth_request
#     asking that latchkey, against the same app without auth_request. The "app" is an
#     nginx server block answering a fixed body, so the ratio is the cost of the
#     question. Where the time goes: the CPU time nginx's worker and latchkey each
#     spent per request (from /proc) during those runs.
#
#   bench/forward.sh [ROUNDS] [SECONDS]     (defaults: 5 rounds of 3 s, 32 connections)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
seconds="${2:-3}"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    package=$tool; [ "$tool" = nginx ] && package=nginx-light
    apt-get install -y "$package" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$package" >/dev/null; }
  }
done
cargo build -j2 --release -p latchkey-server --bin latchkey >&2
source bench/common.sh

port=18300
nginx_port=18301
app_port=18302
cat >"$work/rules.toml" <<'RULES'
[[rule]]
host = "app.localhost"
schemes = ["http"]
policy = "one_factor"
RULES
LATCHKEY_SECRET_KEY="benchmark key that is at least thirty-two bytes" LATCHKEY_LOG=error \
  taskset -c 0 target/release/latchkey serve --bind "127.0.0.1:$port" \
  --database-url "sqlite://$work/forward.db" --session-store memory \
  --access-rules "$work/rules.toml" --trusted-proxy 127.0.0.1 \
  --public-url "http://login.localhost:$nginx_port" >"$work/latchkey.log" 2>&1 &
pids+=($!)
wait_port "$port"
cookie=$(session_cookie "$port")
[ -n "$cookie" ] || { echo "no session cookie" >&2; cat "$work/latchkey.log" >&2; exit 1; }

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream app { server 127.0.0.1:$app_port; keepalive 32; }
  map \$http_host \$latchkey_port {
    "~^[^:]+(?<port>:[0-9]+)\$" \$port;
    default "";
  }
  upstream latchkey { server 127.0.0.1:$port; keepalive 32; }
  # The app: a fixed answer.
  server {
    listen 127.0.0.1:$app_port;
    location / { return 200 "hello from the app\n"; }
  }
  # The same app, guarded (the shipped config's auth_request block, keep-alive upstreams).
  server {
    listen 127.0.0.1:$nginx_port;
    server_name app.localhost;
    location / {
      auth_request /latchkey-auth;
      auth_request_set \$latchkey_user \$upstream_http_remote_user;
      proxy_set_header Remote-User \$latchkey_user;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location = /latchkey-auth {
      internal;
      proxy_pass http://latchkey/auth/nginx;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$host\$latchkey_port\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  # The same app, not guarded.
  server {
    listen 127.0.0.1:$nginx_port;
    server_name open.localhost;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
}
CONF
taskset -c 0 /usr/sbin/nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
wait_port "$nginx_port"

# Each target: name, URL, then its headers, one per argument.
declare -A target
target[home]="http://127.0.0.1:$port/home|Cookie: $cookie|Accept: application/json"
target[forward]="http://127.0.0.1:$port/auth/forward|Cookie: $cookie|X-Forwarded-Method: GET|X-Forwarded-Proto: http|X-Forwarded-Host: app.localhost|X-Forwarded-Uri: /dashboard"
target[nginx_question]="http://127.0.0.1:$port/auth/nginx|Cookie: $cookie|X-Original-URL: http://app.localhost/dashboard|X-Original-Method: GET"
target[open_app]="http://127.0.0.1:$nginx_port/dashboard|Host: open.localhost|Cookie: $cookie"
target[guarded_app]="http://127.0.0.1:$nginx_port/dashboard|Host: app.localhost|Cookie: $cookie"
rows="home forward nginx_question open_app guarded_app"

latchkey_pid=${pids[0]}
nginx_worker=$(pgrep -P "${pids[1]}" | head -1)
# cpu_seconds PID: user + system time the process has used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
declare -A rps p99 cpu_nginx cpu_latchkey count
for round in $(seq "$rounds"); do
  for name in $rows; do
    IFS='|' read -r -a parts <<<"${target[$name]}"
    args=()
    for h in "${parts[@]:1}"; do args+=(-H "$h"); done
    nginx_before=$(cpu_seconds "$nginx_worker")
    latchkey_before=$(cpu_seconds "$latchkey_pid")
    out=$(taskset -c 1 wrk -t1 -c32 -d"${seconds}s" --latency "${args[@]}" "${parts[0]}")
    done_requests=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu_nginx[$name]=$(awk -v a="${cpu_nginx[$name]:-0}" -v b="$nginx_before" -v c="$(cpu_seconds "$nginx_worker")" 'BEGIN {print a + c - b}')
    cpu_latchkey[$name]=$(awk -v a="${cpu_latchkey[$name]:-0}" -v b="$latchkey_before" -v c="$(cpu_seconds "$latchkey_pid")" 'BEGIN {print a + c - b}')
    count[$name]=$(( ${count[$name]:-0} + done_requests ))
    if grep -q "Non-2xx" <<<"$out"; then echo "$name answered errors" >&2; echo "$out" >&2; exit 1; fi
    rps[$name]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
    p99[$name]+="$(awk '$1 == "99%" {v=$2; u=1; if (v ~ /us$/) u=0.001; else if (v ~ /ms$/) u=1; else if (v ~ /s$/) u=1000; sub(/[a-z]+$/, "", v); printf "%.3f", v*u}' <<<"$out") "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$(median <<<"${rps[$1]}")" -v b="$(median <<<"${rps[$2]}")" 'BEGIN {printf "%.2f", a/b}'; }
printf '\nwrk -t1 -c32, median of %s rounds of %ss (latchkey and nginx on core 0, wrk on core 1)\n\n' "$rounds" "$seconds"
printf '%-44s %10s %10s %8s\n' target req/s "p99 ms" ratio
row() { printf '%-44s %10.0f %10s %8s\n' "$1" "$(median <<<"${rps[$2]}")" "$(median <<<"${p99[$2]}")" "$3"; }
row "latchkey GET /home (memory store)" home "1.00"
row "latchkey GET /auth/forward" forward "$(ratio forward home)"
row "latchkey GET /auth/nginx" nginx_question "$(ratio nginx_question home)"
row "nginx -> app, no auth_request" open_app "1.00"
row "nginx -> auth_request -> app" guarded_app "$(ratio guarded_app open_app)"
printf '\nCPU per request through nginx (user+system, from /proc), microseconds:\n'
for name in open_app guarded_app; do
  printf '  %-12s nginx worker %6.1f   latchkey %6.1f\n' "$name" \
    "$(awk -v t="${cpu_nginx[$name]}" -v n="${count[$name]}" 'BEGIN {printf "%.1f", t / n * 1e6}')" \
    "$(awk -v t="${cpu_latchkey[$name]}" -v n="${count[$name]}" 'BEGIN {printf "%.1f", t / n * 1e6}')"
done
echo "per-round req/s:"; for name in $rows; do echo "  $name: ${rps[$name]}"; done
