#!/usr/bin/env bash
# Issue 13's bare-loop comparison, right after matrix.sh on the same machine: vLLM's own loop vs the
# suite's cell on one engine (interleaved), and against the suite's reported figure.
source .ci/gpu/env.sh
unpack_carried
for f in ${BARE_FORMATS:-bf16 fp8}; do
  timeout 240 python3 -m core.tools.perf bare-vllm "$OUT/matrix.jsonl" --model qwen2.5-vl-7b --format "$f" \
    --rounds 5 --max-videos 4 --json "$OUT/bare-$f.json" > "$OUT/bare-$f.log" 2>&1
  echo "== bare $f: exit $? =="; grep "^|" "$OUT/bare-$f.log" || tail -5 "$OUT/bare-$f.log"
done
