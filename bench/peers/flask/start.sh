#!/usr/bin/env bash
# The Flask peer for bench/run.sh: Flask + Flask-Login + SQLite under gunicorn, one sync
# worker (the issue's baseline), bound to 127.0.0.1:PORT with its users in DBFILE.
#
#   bench/peers/flask/start.sh PORT DBFILE
#   bench/peers/flask/start.sh --setup       (only create the venv and install)
#
# The venv is bench/peers/flask/.venv, made and filled from requirements.txt (PyPI) when
# it is missing or requirements.txt changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/gunicorn" ] || ! cmp -s "$here/requirements.txt" "$venv/.requirements.txt"; then
  echo "flask peer: installing $here/requirements.txt into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$venv/.requirements.txt"
fi
[ "${1:-}" = --setup ] && exit 0
[ $# -eq 2 ] || { echo "usage: $0 PORT DBFILE | --setup" >&2; exit 2; }
port=$1
db=$(realpath -m "$2")
export FLASK_PEER_DB="$db"
exec "$venv/bin/gunicorn" --chdir "$here" --workers 1 --worker-class sync \
  --bind "127.0.0.1:$port" --log-level warning app:app
