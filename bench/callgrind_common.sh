# Shared by the callgrind scripts (sourced).

# per_request LABEL PID FILES -- COMMAND...: instructions per request of the process PID
# (under callgrind, writing its dumps as FILES*): COMMAND COUNT sends COUNT requests; it
# runs once with 200 to warm up, then the counters are zeroed, it runs with 2,000, and
# the dump's total is divided by 2,000. Prints `LABEL: N instructions per request` (and
# the dump's file with KEEP=1).
per_request() {
  local label=$1 pid=$2 files=$3
  shift 4
  "$@" 200
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$@" 2000
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  local file total
  file=$(ls -t "$files"* | head -1)
  total=$(grep -E "^(summary|totals):" "$file" | head -1 | awk '{print $2}')
  echo "$label: $((total / 2000)) instructions per request${KEEP:+ ($file)}"
}
