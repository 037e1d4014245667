#!/usr/bin/env bash
# Profile one worker process running W1's workload: N queued 5-step executions, 64 slots.
#   bash bench/profile.sh postgres 3000 w1-profile.txt   (or: sqlite)
# Needs py-spy (pip install py-spy). Prints the top of the profile (CPU samples: --gil).
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-postgres}"; n="${2:-3000}"; out="${3:-w1-profile.txt}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
if [ "$backend" = postgres ]; then
  admin="${CONVEYOR_BENCH_PG:-postgresql://postgres@127.0.0.1:5432/postgres}"
  psql -q "$admin" -c "DROP DATABASE IF EXISTS conveyor_profile WITH (FORCE)" -c "CREATE DATABASE conveyor_profile"
  url="${admin%/*}/conveyor_profile"
else
  url="sqlite:///$work/profile.db"
fi
python - "$url" "$n" <<'PY'
import asyncio, sys
sys.path.insert(0, "bench")
import workers
async def main(url: str, n: int) -> None:
    app = await workers.open_app(url, workers.chain_definition())
    try:
        await workers.enqueue_all(app, "bench-chain", n)
    finally:
        app.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
PY
CONVEYOR_DATABASE_URL="$url" py-spy record --gil -r 250 -f raw -o "$out" -- \
  conveyor worker --concurrency 64 > "$work/worker.log" 2>&1 &
spy=$!
start=$(date +%s.%N)
python - "$url" "$n" <<'PY'
import sys, time
from sqlalchemy import create_engine, text
url, n = sys.argv[1], int(sys.argv[2])
engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
while True:
    with engine.connect() as conn:
        done = conn.execute(text("SELECT count(*) FROM executions WHERE status = 'succeeded'")).scalar()
    if done >= n:
        break
    time.sleep(0.2)
PY
echo "$n executions in $(echo "$(date +%s.%N) - $start" | bc) s (includes worker start-up)"
pkill -INT -f "conveyor worker --concurrency 64" || true
wait "$spy" || true
python - "$out" <<'PY'
import collections, sys
total, inclusive = 0, collections.Counter()
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    total += int(count)
    for frame in set(stack.split(";")):
        inclusive[frame] += int(count)
print(f"{total} samples (GIL held)")
for frame, count in inclusive.most_common(45):
    if "conveyor" in frame or "sqlalchemy" in frame or "jinja2" in frame or "psycopg" in frame:
        print(f"{100 * count / total:5.1f}%  {frame[:120]}")
PY
