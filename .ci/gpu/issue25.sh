#!/usr/bin/env bash
# Issues 23 and 25 on one lent H100/H200, in device commands run back to back (the machine keeps /tmp only
# while it stays warm, ~30 s between commands). Every command first unpacks the bundles it carried, as
# docs/offline-bundles.md says (parts staged until the last arrives):
#   bash .ci/gpu/issue25.sh prep    carry .bundle/gpu-suite-cp312 .bundle/gpu-quant-cp312:
#                                   re-record the sm90 HF goldens of tiny and tiny-trained (12 clips, with
#                                   their preprocessing fingerprint); make the 7B shape's random-weight NVFP4
#                                   checkpoint (and with FP8=1, or FP8="MODEL ...", the ModelOpt FP8 export
#                                   of the 7B shape or of each MODEL) into /tmp/vqcache
#   bash .ci/gpu/issue25.sh stage   carry one part of .bundle/vllm-0.26.0-...: staged
#   FORMATS="bf16 ct_fp8_dynamic" bash .ci/gpu/issue25.sh load
#                                   carry the vLLM bundle's last part: unpacked; then each format of MODEL
#                                   served by `vllm serve` under load (offline, the largest Poisson rate at p99
#                                   e2e <= 1 s, camera streams at one clip per 2 s), its results kept as it ends;
#                                   a format is not started when less than MIN_FORMAT_S is left before DEADLINE
#   bash .ci/gpu/issue25.sh vgold   the sm90 vLLM goldens of tiny (bf16, ModelOpt fp8), in-process engines
# Done 2026-12-07 on H100s: prep, stage x2, load with FORMATS="bf16 ct_w4a16" (docs/measurements/
# 2026-12-07-h100-load.md); on a second lease NVFP4=0 prep, stage x2, then vgold and
# FORMATS=ct_fp8_dynamic load in one command (~450 s). A third lease: FP8="qwen2.5-vl-7b internvl3.5-4b"
# prep (InternVL's export failed: fixed in 4049c1d), stage x2, FORMATS="ct_w8a8 fp8", internvl3.5-4b:bf16,
# ct_nvfp4 (docs/measurements/2026-12-07-h100-load-3.md; rate searches after the first cut by DEADLINE).
# Leases differ (one W8A8 checkpoint: 14.7 videos/s at the SLO on one, 33.4 on another): put bf16 in every
# lease's FORMATS, first. A fourth lease (docs/measurements/2026-12-07-h100-load-4.md): stage x3 (the suite
# bundle alone first, no prep), FORMATS="bf16 ct_w8a8", FORMATS="ct_fp8_dynamic ct_w4a16", then
# `NVFP4=0 FP8=1 prep` and FORMATS=fp8 in one command (~190-200 s a format there). A fifth lease
# (docs/measurements/2026-12-08-h100-load-5.md): `NVFP4=0 FP8=internvl3.5-4b prep`, stage x2, then
# FORMATS=internvl3.5-4b:fp8 and FORMATS=internvl3.5-4b:bf16, a command each (420-480 s a format: 4,339
# prompt tokens a video). Left: FORMATS="bf16 ct_nvfp4" (~450 s with NVFP4's checkpoint made in the load).
# Results come back in $OUT. pytest gets SIGINT at its limit (30 s to write its summary and JSON).
set -uo pipefail
export VQBENCH_CACHE=/tmp/vqcache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_USE_FLASHINFER_SAMPLER=0
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# $OUT brings back at most 8 files: everything is written under W, and packed into $OUT at the end.
W=/tmp/work-${1:-none}; mkdir -p "$W"
for b in .bundle/*/; do
  [ -f "$b/manifest.json" ] || continue
  n=$(basename "$b")
  [ -f "/tmp/vqbench-site/$n/.unpacked" ] && continue
  python3 -m core.tools.bundle unpack "$b" --stage "/tmp/vqbench-stage/$n" --target "/tmp/vqbench-site/$n" 2>&1 | tail -2
  [ "${PIPESTATUS[0]}" = 0 ] && touch "/tmp/vqbench-site/$n/.unpacked"
done
for site in /tmp/vqbench-site/*; do [ -f "$site/.unpacked" ] && PYTHONPATH="$site:${PYTHONPATH:-}"; done
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
versions() {
  python3 - <<'PY'
import importlib.metadata as m
for p in ("torch", "transformers", "vllm", "compressed-tensors", "nvidia-modelopt", "torchao", "av", "syrupy"):
    try: print(f"{p} {m.version(p)}", end="; ")
    except Exception: print(f"{p} -", end="; ")
print()
PY
}
step() {  # step NAME LIMIT CMD...: run, log to $OUT/NAME.log, print its exit and time
  local name=$1 limit=$2; shift 2; local t0; t0=$(date +%s)
  timeout -s INT -k 30 "$limit" "$@" > "$W/$name.log" 2>&1
  echo "== $name: exit $? in $(( $(date +%s) - t0 )) s =="
  grep -E "passed|failed|error" "$W/$name.log" | tail -2 | cut -c1-300
  grep -E "^(FAILED|ERROR)" "$W/$name.log" | cut -c1-300 | head -6
}

case "${1:-}" in
  stage) ls /tmp/vqbench-stage/* 2>/dev/null | head; exit 0 ;;
  prep)
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.max.sm,power.limit --format=csv,noheader
    versions
    if [ -n "${GOLD:-}" ]; then  # done 2026-12-07 on an H100 (committed); GOLD=1 records them again
      step gold-hf 180 python3 -m pytest bench/test_golden.py -m gpu -p no:cacheprovider -q -rs \
        --gpu-model tiny --gpu-model tiny-trained --backend hf --format bf16 --format fp8 --format int4_weight_only \
        --snapshot-update --results "$W/gold-hf.jsonl"
      git status --short golden/ | head -12
      cp golden/*hf*sm90*.json "$W/"
    fi
    [ "${NVFP4:-1}" = 0 ] || step nvfp4-7b 150 python3 -c "
from core.models import registry; from core.plan.formats import get_format
from core.quant.llmcompressor_q import export; import json, time
t = time.time(); p, r = export(registry.resolve('qwen2.5-vl-7b'), get_format('ct_nvfp4'), options=None, device=None)
print(p, json.dumps(r)); print('made in', round(time.time() - t, 1), 's')"
    [ "${NVFP4:-1}" = 0 ] || tail -3 "$W/nvfp4-7b.log" | cut -c1-400
    # FP8=1 (or FP8="MODEL ..."): the ModelOpt FP8 export (HF load + calibration + export) of each model
    [ "${FP8:-}" = 1 ] && FP8=qwen2.5-vl-7b
    for m in ${FP8:-}; do
      step "fp8-$m" 170 python3 -m core.cli quantize --model "$m" --format fp8 --device cuda --export
      tail -3 "$W/fp8-$m.log" | cut -c1-300
    done
    ;;
  load)
    versions
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
    MODEL=${MODEL:-qwen2.5-vl-7b}; MODEL_DEFAULT=$MODEL
    # a server an earlier command left behind would hold the GPU (one did, before test_interrupts.py): end it
    for p in $(pgrep -f "entrypoints.openai.api_serve[r]"); do
      echo "leftover vLLM server $p: killing its process group"; kill -9 -- "-$(ps -o pgid= -p "$p" | tr -d ' ')"
    done
    # DEADLINE: seconds into this command by which every load must end (a device command may run 600 s);
    # a format that would get less than MIN_FORMAT_S is not started, and says so.
    DEADLINE=${DEADLINE:-570}
    for mf in ${FORMATS:-bf16}; do  # a FORMAT, or MODEL:FORMAT for another model than MODEL's
      f=${mf##*:}; MODEL=$MODEL_DEFAULT; [ "$mf" != "$f" ] && MODEL=${mf%%:*}
      left=$(( DEADLINE - SECONDS )); limit=${PER_FORMAT_TIMEOUT:-290}; [ "$left" -lt "$limit" ] && limit=$left
      if [ "$limit" -lt "${MIN_FORMAT_S:-200}" ]; then echo "== load-$MODEL-$f: not started, ${left} s left =="; continue; fi
      step "load-$MODEL-$f" "$limit" python3 -m pytest bench/test_load.py -m gpu -p no:cacheprovider -q -s \
        --gpu-model "$MODEL" --backend vllm --format "$f" --load offline --load sweep --load camera \
        --load-requests "${REQUESTS:-100}" --load-confirm "${CONFIRM:-300}" --load-slo 1.0 --camera-period 2 --camera-clips "${CAMERA_CLIPS:-3}" \
        --server-start-timeout 240 --results "$W/load.jsonl" --benchmark-json "$W/bench-$MODEL-$f.json"
      grep -hE "Selected|Using \w+Kernel|KV cache size|Model loading took|Maximum concurrency|peak activation" \
        "$W"/server-logs/*"-$f-"*.log 2>/dev/null | sed -E 's/^.*\] //' | cut -c1-160 | sort -u | head -8
      cp "$W/load.jsonl" "$OUT/load.jsonl" 2>/dev/null; tar czf "$OUT/load-work.tgz" -C "$W" . 2>/dev/null
    done
    python3 -m core.load.report "$W/load.jsonl" 2>&1 | tee "$W/load-report.md"
    python3 -m core.tools.observed add "$W/load.jsonl" --evidence "$W/observed.json" --where "device run" 2>&1 | head -8
    cp "$W/load.jsonl" "$OUT/load.jsonl"
    ;;
  vgold)
    step gold-vllm 300 python3 -m pytest bench/test_golden.py -m gpu -p no:cacheprovider -q -rs \
      --gpu-model tiny --backend vllm --format bf16 --format fp8 --snapshot-update --results "$W/gold-vllm.jsonl"
    cp golden/*vllm*sm90*.json "$W/"
    python3 -m core.tools.observed add "$W/gold-vllm.jsonl" --evidence "$W/observed-vllm.json" --where "device run" 2>&1 | head -4
    ;;
  *) echo "usage: $0 prep|stage|load|vgold" >&2; exit 2 ;;
esac
tar czf "$OUT/$1-$(date +%H%M%S).tgz" -C "$W" . && ls -la "$OUT"
