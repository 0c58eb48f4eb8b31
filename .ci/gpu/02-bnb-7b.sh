#!/usr/bin/env bash
# Device call 2: carry .bundle/gpu-bnb-cp312; bnb cells, the shape-only 7B, HF fast mode and harness overhead.
source .ci/gpu/env.sh
py -m core.tools.bundle unpack .bundle/gpu-bnb-cp312 --target /tmp/vqbench-site/gpu-bnb-cp312 | tail -1
source .ci/gpu/env.sh
cells hfB --gpu-model tiny --gpu-model qwen2.5-vl-3b --gpu-model qwen2.5-vl-7b --backend hf --max-videos 4 \
  --format bnb_int8 --format bnb_nf4 --format bf16 --format fp8 --format nvfp4 --format int4_awq
py -m core.tools.perf modes --model qwen2.5-vl-7b --rounds 10 --json "$OUT/modes.json" 2>&1 | grep "^|"
py -m core.tools.perf overhead --model qwen2.5-vl-7b --rounds 20 --json "$OUT/overhead.json" 2>&1 | grep "^|"
tar czf "$OUT/golden-sm90-b.tgz" golden/*sm*.json 2>/dev/null
