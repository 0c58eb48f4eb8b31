# Sourced by every device script: the carried bundles on PYTHONPATH, one cache, offline.
export VQBENCH_CACHE=/tmp/vqcache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
for site in /tmp/vqbench-site/*; do [ -d "$site" ] && PYTHONPATH="$site:$PYTHONPATH"; done
export PYTHONPATH="$PWD:$PYTHONPATH"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
py() { python3 "$@"; }
cells() {  # cells NAME ARGS... : one pytest session of GPU cells, results + table under $OUT
  local name=$1; shift
  timeout "${CELL_TIMEOUT:-500}" python3 -m pytest bench/test_cells.py bench/test_golden.py bench/test_drift.py \
    -m gpu -p no:cacheprovider -q --timeout 400 --snapshot-update --rounds 3 --warmup-rounds 1 \
    --results "$OUT/$name.jsonl" --benchmark-json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? =="; tail -3 "$OUT/$name.log" | cut -c1-300
  python3 -m core.tools.perf summarize "$OUT/$name.jsonl" 2>&1 | cut -c1-220
}
