#!/usr/bin/env bash
# One phase of the GPU checks on a single H200 (the 2-GPU machine runs matrix.sh instead).
#   bash .ci/gpu/phase.sh hf     HF: tiny, tiny-trained, 7B shape; bf16, fp8 (fake-quant), int4_weight_only;
#                                records the sm90 goldens of the tiny models
#   bash .ci/gpu/phase.sh vllm   vLLM: tiny, tiny-trained, 7B shape; bf16, fp8 (ModelOpt export); then
#                                vLLM's bare loop against the suite's cell on the 7B shape
# Results, logs and the new goldens come back in $OUT (results-*.jsonl, report-*.md, phase-*.tgz).
source .ci/gpu/env.sh
unpack_carried
phase=$1; shift
nvidia-smi --query-gpu=index,name,memory.used,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
versions
case "$phase" in
  hf) ARGS="--backend hf --format bf16 --format fp8 --format int4_weight_only" ;;
  vllm) ARGS="--backend vllm --format bf16 --format fp8" ;;
esac
M=""; for m in ${GPU_MODELS:-tiny tiny-trained qwen2.5-vl-7b}; do M="$M --gpu-model $m"; done
t0=$(date +%s)
timeout "${PHASE_TIMEOUT:-420}" python3 -m pytest bench/test_cells.py bench/test_golden.py bench/test_drift.py -m gpu \
  -p no:cacheprovider -q -rs $M $ARGS \
  --max-videos 4 --rounds 3 --warmup-rounds 1 --snapshot-update --results "$OUT/results-$phase.jsonl" \
  --benchmark-json "$OUT/bench-$phase.json" "$@" > "$OUT/pytest-$phase.log" 2>&1
echo "== pytest $phase: exit $? in $(( $(date +%s) - t0 )) s =="
grep -E "passed|failed|error" "$OUT/pytest-$phase.log" | tail -1
sed -n '/vqbench session/,/engine loads/p' "$OUT/pytest-$phase.log" | head -30
python3 -m core.tools.perf summarize "$OUT/results-$phase.jsonl" 2>&1 | cut -c1-230
python3 -m core.cli report "$OUT/results-$phase.jsonl" --out "$OUT/rep" > /dev/null 2>&1 && cp "$OUT/rep/report.md" "$OUT/report-$phase.md"
if [ "$phase" = vllm ]; then
  for f in bf16 fp8; do
    timeout "${BARE_TIMEOUT:-110}" python3 -m core.tools.perf bare-vllm "$OUT/results-$phase.jsonl" --model qwen2.5-vl-7b --format "$f" \
      --rounds 5 --max-videos 4 --json "$OUT/bare-$f.json" > "$OUT/bare-$f.log" 2>&1
    echo "== bare $f: exit $? =="; grep "^|" "$OUT/bare-$f.log" || tail -4 "$OUT/bare-$f.log"
  done
fi
tar czf "$OUT/phase-$phase.tgz" golden/*sm90* "$OUT"/*.log "$OUT"/bare-*.json "$OUT/rep" 2>/dev/null
rm -rf "$OUT/rep" "$OUT"/pytest-*.log "$OUT"/bare-*.log
ls "$OUT"
