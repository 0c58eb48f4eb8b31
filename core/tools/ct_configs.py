"""Regenerate ``core/quant/ct_configs.json``: the ``quantization_config`` llm-compressor writes for each
recipe, taken from real checkpoints of the tiny model (never written by hand).

    python -m core.tools.ct_configs            # make (or reuse) the checkpoints and rewrite the file
    python -m core.tools.ct_configs --check    # exit 1 when the file differs from what the recipes write

Shape-only models (real dimensions, no weights) are served by vLLM from a config-only checkpoint that
carries this config (``core.quant.llmcompressor_q.dummy_checkpoint``). The recipes name layers by
class and pattern, not by size, so the tiny model's config is the 7B's too; the tiny's vision layer
names in ``ignore`` are harmless there, and the ignore fix (``re:.*visual.*``) covers every vision
layer of any size. Needs the llm-compressor environment (``tox -e llmcompressor``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys

from core.quant.llmcompressor_q import CONFIGS_FILE

MODEL = "tiny-trained"
VOLATILE = ("version",)
"""quantization_config keys that change with the compressed-tensors release, not with the recipe."""


def generate() -> dict:
    from core.backends.exports import checkpoint_for
    from core.inputs.requests import EngineOptions
    from core.models import registry
    from core.plan import device
    from core.plan.formats import all_formats

    spec, options = registry.resolve(MODEL), EngineOptions()
    configs, versions = {}, None
    for fmt in all_formats():
        if fmt.tool != "llmcompressor":
            continue
        path, report = checkpoint_for(spec, fmt, options=options, device=device.CPU)
        configs[fmt.recipe] = json.loads((path / "config.json").read_text())["quantization_config"]
        versions = report.get("versions")
    return {"source": {"model": MODEL, "made_by": "python -m core.tools.ct_configs", "versions": versions},
            "configs": configs}


def _comparable(data: dict) -> dict:
    return {name: {k: v for k, v in cfg.items() if k not in VOLATILE} for name, cfg in data["configs"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    args = parser.parse_args(argv)
    new = generate()
    text = json.dumps(new, indent=2, sort_keys=True) + "\n"
    if args.check:
        old = json.loads(CONFIGS_FILE.read_text())
        if _comparable(old) != _comparable(new):
            a = json.dumps(_comparable(old), indent=2, sort_keys=True).splitlines(True)
            b = json.dumps(_comparable(new), indent=2, sort_keys=True).splitlines(True)
            sys.stdout.writelines(difflib.unified_diff(a, b, CONFIGS_FILE.name, "regenerated"))
            return 1
        return 0
    CONFIGS_FILE.write_text(text)
    print(f"wrote {CONFIGS_FILE} ({', '.join(new['configs'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
