#!/usr/bin/env bash
# Device call: carry .bundle/gpu-core-cp312; harness overhead and HF eager vs fast on the shape-only
# 7B, then 7B / Cosmos-7B / InternVL3.5-4B cells.
source .ci/gpu/env.sh
py -m core.tools.bundle unpack .bundle/gpu-core-cp312 --target /tmp/vqbench-site/gpu-core-cp312 | tail -1
source .ci/gpu/env.sh
timeout 120 python3 -m core.tools.perf overhead --model qwen2.5-vl-7b --rounds 20 --json "$OUT/overhead.json" 2>"$OUT/overhead.err" | grep "^|" || tail -3 "$OUT/overhead.err"
CELL_TIMEOUT=240 cells hf7b --gpu-model qwen2.5-vl-7b --gpu-model cosmos-reason1-7b --gpu-model internvl3.5-4b \
  --backend hf --max-videos 3 --format bf16 --format fp8 --format int4_weight_only --format fp8_dynamic
timeout 170 python3 -m core.tools.perf modes --model qwen2.5-vl-7b --rounds 8 --json "$OUT/modes.json" 2>"$OUT/modes.err" | grep "^|" || tail -5 "$OUT/modes.err"
