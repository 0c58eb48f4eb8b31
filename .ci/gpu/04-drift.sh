#!/usr/bin/env bash
# Device call 4 (issue 17), after 01-core.sh on the same warm machine (gpu-core unpacked): carry
# .bundle/gpu-stats-cp312. Drift with located causes on the tiny-trained model on the GPU (fp8 LM-only
# vs fp8+vit), NVML clocks, and the latency history gate over four runs of the same cells.
source .ci/gpu/env.sh
py -m core.tools.bundle unpack .bundle/gpu-stats-cp312 --target /tmp/vqbench-site/gpu-stats-cp312 | tail -1
source .ci/gpu/env.sh
py -c "import json; from core.metrics.history import gpu_clocks; print('clocks', json.dumps(gpu_clocks(0)))"
# Expect: clocks {"sm_mhz": ..., "mem_mhz": ..., "sm_max_mhz": ..., "mem_max_mhz": ..., "power_limit_w": ..., ...}
# (every field NVML answers on the H200; sm_app_mhz may be absent where application clocks are not supported)
timeout 500 python3 -m pytest bench/test_drift.py -m gpu -p no:cacheprovider -q -s --gpu-model tiny-trained \
  --backend hf --format bf16 --format fp8 --format fp8+vit --max-videos 6 --results "$OUT/drift.jsonl" \
  > "$OUT/drift.log" 2>&1; echo "== drift: exit $? =="
grep -E "^drift |^vocab KL|^vision  " "$OUT/drift.log"
# Expect: 'drift fp8 vs bf16 (reference): INCONCLUSIVE ...' (6 clips cannot see a 10% flip rate),
# 'vision       6 clips ... cosine min 1.000000' for fp8 (LM-only) and a cosine below 1 with a relative
# error of ~1% for fp8+vit (1.1% measured on CPU); 'vocab KL     answer position, 6 clips: mean ...'.
for i in 1 2 3 4; do
  VQBENCH_RUN_ID=h$i timeout 300 python3 -m pytest bench/test_cells.py -m gpu -p no:cacheprovider -q \
    --gpu-model tiny --backend hf --format bf16 --max-videos 2 --history "$OUT/history.sqlite" \
    --results "$OUT/history-$i.jsonl" > "$OUT/history-$i.log" 2>&1; echo "== history run $i: exit $? =="
done
py -c "
import json
for l in open('$OUT/history-4.jsonl'):
    r = json.loads(l)
    if r.get('kind') == 'timed': print(r['video'], r['history']['status'], round(r['history']['delta_pct'] or 0, 1), r['history']['message'][:120])
"
# Expect: runs 1-3 'no history'; run 4 prints 'ok' (or 'warn'/'fail' only if the GPU was shared) per video.
py -m core.cli report "$OUT/drift.jsonl" "$OUT/history-4.jsonl" --out "$OUT/report" 2>&1 | tail -2
# Expect: report.md and report.html written; both have "Drift against the reference" and "Latency against the history".
