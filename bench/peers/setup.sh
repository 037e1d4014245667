#!/usr/bin/env bash
# Create one virtualenv per peer under bench/.venvs/<peer> and install the peer, pinned.
# Idempotent: an existing venv is reused and pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"

declare -A PEERS=(
  [celery]="celery[redis]==5.7.0 redis==8.1.0 psycopg[binary]==3.3.9"
  [dbos]="dbos==3.4.0 psycopg[binary]==3.3.9"
  [procrastinate]="procrastinate==3.10.0 psycopg[binary]==3.3.9"  # psycopg + psycopg-pool are its own dependencies
)

for peer in celery dbos procrastinate; do
  venv="bench/.venvs/$peer"
  if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    "$PYTHON" -m venv "$venv"
  fi
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check ${PEERS[$peer]}
  echo "$peer: $("$venv/bin/python" -m pip show "$peer" 2>/dev/null | sed -n 's/^Version: //p')"
done
