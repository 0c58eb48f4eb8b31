#!/usr/bin/env bash
# Issue 25's GPU run: each format of a model served by a real `vllm serve` process under load (offline,
# the largest Poisson rate at p99 e2e <= 1 s, camera streams at one clip per 2 s), then the table.
# Usage (vLLM and gpu-suite bundles unpacked under /tmp/vqbench-site):
#   MODEL=qwen2.5-vl-7b FORMATS="bf16 fp8" bash .ci/gpu/load.sh
# Results go to $OUT/load-$MODEL.jsonl after each format (a run cut short keeps what finished).
source .ci/gpu/env.sh
nvidia-smi --query-gpu=index,name,memory.used,memory.total,clocks.sm,power.limit --format=csv,noheader
versions
MODEL=${MODEL:-qwen2.5-vl-7b}
WORK=/tmp/load-work; mkdir -p "$WORK"
for f in ${FORMATS:-bf16}; do
  t0=$(date +%s)
  timeout "${PER_FORMAT_TIMEOUT:-240}" python3 -m pytest bench/test_load.py -m gpu -p no:cacheprovider -q -s \
    --gpu-model "$MODEL" --backend vllm --format "$f" --load offline --load sweep --load camera \
    --load-requests "${REQUESTS:-100}" --load-slo 1.0 --camera-period 2 --camera-clips "${CAMERA_CLIPS:-3}" \
    --results "$WORK/load.jsonl" --benchmark-json "$WORK/bench-$MODEL-$f.json" > "$WORK/pytest-$MODEL-$f.log" 2>&1
  echo "== $MODEL $f: exit $? in $(( $(date +%s) - t0 )) s =="
  grep -E "passed|failed|[Ee]rror" "$WORK/pytest-$MODEL-$f.log" | tail -4 | cut -c1-400
  cp "$WORK/load.jsonl" "$OUT/load-$MODEL.jsonl" 2>/dev/null
  tar czf "$OUT/load-logs-$MODEL.tgz" -C "$WORK" . 2>/dev/null
done
python3 -m core.load.report "$WORK/load.jsonl"
