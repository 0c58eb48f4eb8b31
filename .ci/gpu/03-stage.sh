#!/usr/bin/env bash
# Device calls 3-4: stage one vLLM bundle part each; meanwhile more HF cells (argument: which set).
source .ci/gpu/env.sh
py -m core.tools.bundle unpack .bundle/vllm-0.26.0-cp312-manylinux_2_28_x86_64 \
  --stage /tmp/vqbench-stage/vllm --target /tmp/vqbench-vllm/site | tail -1
case "$1" in
  a) cells hfC --gpu-model cosmos-reason1-7b --gpu-model internvl3.5-4b --backend hf --max-videos 4 \
       --format bf16 --format fp8 --format bnb_nf4 --format fp8+kv_fp8 --format int8_sq+kv_fp8 ;;
  b) cells hfD --gpu-model qwen2.5-vl-7b --backend hf --max-videos 4 --fast --ignore-eos \
       --format bf16 --format fp8_dynamic --format int4_weight_only ;;
esac
