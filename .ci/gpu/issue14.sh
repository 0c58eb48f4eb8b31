#!/usr/bin/env bash
# Issues 13 and 14 on one H200, in three device calls back to back (the machine stays warm between
# them, so what one unpacks or exports in /tmp the next one finds):
#   bash .ci/gpu/issue14.sh prep   carry .bundle/gpu-core-cp312: unpack it; export the 7B shape in
#                                  ModelOpt FP8 (HF load + calibration + export, into /tmp/vqcache)
#   bash .ci/gpu/issue14.sh ct     carry .bundle/vllm-0.26.0-sm90-dense: the 7B shape through vLLM in
#                                  bf16 and the four compressed-tensors formats (config-only checkpoints,
#                                  load_format="dummy"): speed table of the kernels vLLM picks on sm_90
#   bash .ci/gpu/issue14.sh last   carry .carry/preq: real llm-compressor checkpoints of tiny-trained
#                                  (made on the CPU machine) as pre-quantized models on vLLM, drift
#                                  against tiny-trained bf16; then the 7B ModelOpt FP8 cell and vLLM's
#                                  bare loop against it (issue 13)
#   bash .ci/gpu/issue14.sh more   carry .carry/preq: the 7B shape in ct_w8a8, the W8A8 checkpoint
# .carry/preq (ignored by git: `echo /.carry/ >> .git/info/exclude`) holds checkpoints made here with
#   VQBENCH_LLMCOMPRESSOR_PYTHON=<llm-compressor env>/bin/python vqbench quantize --model tiny-trained \
#     --format ct_w4a16 --device cpu --export     # (and ct_w8a8), copied to .carry/preq/tiny-trained-W4A16-llmc
# pytest gets SIGINT at its limit (then 30 s to write its summary and JSON): a plain kill lost both.
# --ignore-eos makes every answer the same length, so decode ms/token compares like with like.
set -uo pipefail
source .ci/gpu/env.sh
unpack_carried

cells() {  # cells NAME TIMEOUT ARGS...: one pytest session of GPU cells, results under $OUT
  local name=$1 limit=$2; shift 2; local t0; t0=$(date +%s)
  timeout -s INT -k 30 "$limit" python3 -m pytest bench/test_cells.py bench/test_golden.py bench/test_drift.py -m gpu \
    -p no:cacheprovider -q -rs --max-videos 4 --rounds 3 --warmup-rounds 1 \
    --results "$OUT/$name.jsonl" --benchmark-json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? in $(( $(date +%s) - t0 )) s =="
  grep -E "passed|failed|error" "$OUT/$name.log" | tail -1
  grep -E "^(FAILED|ERROR)" "$OUT/$name.log" | cut -c1-300 | head -8
  # vLLM's own lines about the linear kernels it picked, prefix cut, counted
  grep -E "CompressedTensors|Marlin|Cutlass|CUTLASS|kernel for|Using [A-Za-z0-9]+ ?(Linear|kernel)|dummy" \
    "$OUT/$name.log" | sed -E 's/^.*\[[a-z_0-9.]+:[0-9]+\] //' | cut -c1-160 | sort | uniq -c | sort -rn | head -10
  python3 -m core.tools.perf summarize "$OUT/$name.jsonl" 2>&1 | cut -c1-260
}

case "${1:-}" in
  prep)
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm,power.limit --format=csv,noheader
    versions
    t0=$(date +%s)
    timeout 420 python3 -m core.cli quantize --model qwen2.5-vl-7b --format fp8 --device cuda --export \
      > "$OUT/prep-fp8-7b.log" 2>&1
    echo "== 7B ModelOpt fp8 export: exit $? in $(( $(date +%s) - t0 )) s =="
    grep -vE "Warning|warn\(|^\s*$" "$OUT/prep-fp8-7b.log" | tail -6 | cut -c1-240
    ;;
  ct)
    versions
    python3 -m core.cli doctor 2>&1 | awk '/^  [a-z0-9_+]+ /{f=($1 ~ /^(ct_|fp8$|bf16$)/)} f && (/^  [a-z]/ || /vllm\/sm/)' \
      | cut -c1-220
    cells ct7b 560 --gpu-model qwen2.5-vl-7b --backend vllm --ignore-eos \
      --format bf16 --format ct_fp8_dynamic --format ct_w8a8 --format ct_w4a16 --format ct_nvfp4
    ;;
  last)
    M=""; for d in .carry/preq/*/; do M="$M --gpu-model $PWD/${d%/}"; done
    cells preq 220 --backend vllm $M --reference-model tiny-trained --snapshot-update
    python3 - "$OUT/preq.jsonl" <<'PY'
import sys
from core.base import results
r = results.load(sys.argv[1])
seen = set()
for c in r.cells():
    e = c.get("engine")
    if e in seen:
        continue
    seen.add(e)
    d = (c.get("load") or {}).get("details") or {}
    q = d.get("quantization") or {}
    print(e, "| vllm quantization:", d.get("vllm_quantization"), "| prequantized:", q.get("prequantized"),
          "| quantize_s:", (c.get("load") or {}).get("quantize_s"))
for d in r.drift:
    print("drift", d.get("engine"), d.get("status"), {k: d.get(k) for k in ("agreement", "flips", "verdict") if k in d})
PY
    cells fp8-7b 170 --gpu-model qwen2.5-vl-7b --backend vllm --format fp8
    timeout 190 python3 -m core.tools.perf bare-vllm "$OUT/fp8-7b.jsonl" --model qwen2.5-vl-7b --format fp8 \
      --rounds 5 --max-videos 4 --json "$OUT/bare-fp8.json" > "$OUT/bare-fp8.log" 2>&1
    echo "== bare fp8: exit $? =="; grep "^|" "$OUT/bare-fp8.log" || tail -5 "$OUT/bare-fp8.log"
    ;;
  more)  # what ct and last ran out of time for: the 7B shape in ct_w8a8, the W8A8 checkpoint of tiny-trained
    cells ct7b-w8a8 200 --gpu-model qwen2.5-vl-7b --backend vllm --ignore-eos --format ct_w8a8
    cells preq-w8a8 200 --backend vllm --gpu-model "$PWD/.carry/preq/tiny-trained-W8A8-llmc" \
      --reference-model tiny-trained --snapshot-update
    ;;
  *) echo "usage: $0 prep|ct|last|more" >&2; exit 2 ;;
esac
gzip -f "$OUT"/*.log 2>/dev/null; ls "$OUT"
