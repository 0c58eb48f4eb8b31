#!/usr/bin/env bash
# Issue 13's GPU run: `pytest bench -m gpu -n 2 --benchmark-json` over HF and vLLM, the tiny model and
# the 7B shape, bf16 + fp8 + 4-bit formats; then the report and a per-engine summary.
# Usage (on the 2-GPU machine, bundles carried): bash .ci/gpu/matrix.sh [extra pytest args]
source .ci/gpu/env.sh
unpack_carried
nvidia-smi --query-gpu=index,name,memory.used,memory.total,clocks.sm,power.limit --format=csv,noheader
versions
FORMATS=${FORMATS:-"bf16 fp8 int4_weight_only nvfp4"}
F=""; for f in $FORMATS; do F="$F --format $f"; done
t0=$(date +%s)
timeout "${MATRIX_TIMEOUT:-520}" python3 -m pytest bench/test_cells.py bench/test_drift.py -m gpu -n 2 -p no:cacheprovider -q \
  --gpu-model tiny --gpu-model qwen2.5-vl-7b --backend hf --backend vllm $F --max-videos 4 --rounds 3 \
  --warmup-rounds 1 --results "$OUT/matrix.jsonl" --benchmark-json "$OUT/matrix-bench.json" "$@" \
  > "$OUT/matrix.log" 2>&1
echo "== pytest -n 2: exit $? in $(( $(date +%s) - t0 )) s =="
grep -E "passed|failed|error" "$OUT/matrix.log" | tail -2
sed -n '/vqbench session/,$p' "$OUT/matrix.log" | grep -v "^$" | head -40
python3 -c "import json; d=json.load(open('$OUT/matrix-bench.json')); print('merged JSON:', len(d['benchmarks']), 'benchmarks')"
python3 -m core.tools.perf summarize "$OUT/matrix.jsonl" 2>&1 | cut -c1-200
python3 -m core.cli report "$OUT/matrix.jsonl" --out "$OUT/report" > /dev/null 2>&1 && echo "report written"
