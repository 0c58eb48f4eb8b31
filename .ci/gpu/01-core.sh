#!/usr/bin/env bash
# Device call 1: carry .bundle/gpu-core-cp312; HF on the tiny and shape-only 3B models, every format but bnb.
source .ci/gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
py -m core.tools.bundle unpack .bundle/gpu-core-cp312 --target /tmp/vqbench-site/gpu-core-cp312 | tail -1
source .ci/gpu/env.sh
py -m core.tools.perf peaks
F=""; for f in bf16 fp8 nvfp4 int8_sq int4_awq w4a8_awq fp8_dynamic int8_weight_only int4_weight_only; do F="$F --format $f"; done
cells hfA --gpu-model tiny --gpu-model qwen2.5-vl-3b --backend hf --max-videos 4 $F
tar czf "$OUT/golden-sm90.tgz" golden/*sm*.json 2>/dev/null; ls golden | grep -c sm
