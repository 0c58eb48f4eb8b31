# Sourced by every device script: carried bundles unpacked under /tmp/vqbench-site/<name> go on
# PYTHONPATH (newest first), one model/artifact cache, offline, results under $OUT.
export VQBENCH_CACHE=/tmp/vqcache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_USE_FLASHINFER_SAMPLER=0
for site in /tmp/vqbench-site/*; do [ -d "$site" ] && PYTHONPATH="$site:${PYTHONPATH:-}"; done
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# Unpack every bundle this command carried (a bundle's parts travel in .bundle/<name>/).
unpack_carried() {
  for b in .bundle/*/; do
    [ -f "$b/manifest.json" ] || continue
    name=$(basename "$b")
    [ -d "/tmp/vqbench-site/$name" ] && continue
    mkdir -p "/tmp/vqbench-site/$name"
    cat "$b"/*.part* | xz -d | tar x -C "/tmp/vqbench-site/$name" && echo "unpacked $name" \
      || echo "could not unpack $name"
  done
  for site in /tmp/vqbench-site/*; do case ":$PYTHONPATH:" in *":$site:"*) ;; *) PYTHONPATH="$site:$PYTHONPATH";; esac; done
  export PYTHONPATH
}
versions() {
  python3 - <<'PY'
import importlib.metadata as m
for p in ("torch", "transformers", "vllm", "nvidia-modelopt", "pytest", "pytest-xdist", "pytest-benchmark", "syrupy", "av"):
    try: print(f"{p} {m.version(p)}", end="; ")
    except Exception: print(f"{p} -", end="; ")
print()
PY
}
