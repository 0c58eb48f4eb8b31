#!/usr/bin/env bash
# Issue 17 on one H200 in one short call (carry .bundle/gpu-core-cp312): drift located on the trained
# model through HF (fp8 LM-only vs fp8+vit: vision-tower embeddings per frame group, vocabulary KL),
# then the latency history gate over four runs of the same cells (runs 1-3 build the history).
set -uo pipefail
source .ci/gpu/env.sh
unpack_carried
python3 -c "import json; from core.metrics.history import gpu_clocks; print('clocks', json.dumps(gpu_clocks(0)))"
timeout -s INT -k 20 "${DRIFT_LIMIT:-150}" python3 -m pytest bench/test_drift.py -m gpu -p no:cacheprovider -q -s \
  --gpu-model tiny-trained --backend hf --format bf16 --format fp8 --format fp8+vit --max-videos 4 \
  --results "$OUT/drift.jsonl" > "$OUT/drift.log" 2>&1; echo "== drift: exit $? =="
grep -E "^drift |^vocab KL|^vision  |passed|failed" "$OUT/drift.log" | cut -c1-220
for i in 1 2 3 4; do
  timeout -s INT -k 10 60 python3 -m pytest bench/test_cells.py -m gpu -p no:cacheprovider -q --run-id h$i \
    --gpu-model tiny --backend hf --format bf16 --max-videos 2 --history "$OUT/history.sqlite" \
    --results "$OUT/history-$i.jsonl" > /dev/null 2>&1; echo "== history run $i: exit $? =="
done
python3 - "$OUT/history-4.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "timed":
        h = r.get("history") or {}
        print(r["video"], h.get("status"), h.get("delta_pct"), str(h.get("message"))[:160])
PY
gzip -f "$OUT"/*.log 2>/dev/null; ls "$OUT"
