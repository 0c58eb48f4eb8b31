"""Train the reference model: a tiny Qwen2.5-VL that actually sees the fixture task.

    python -m core.train                       # writes fixtures/models/tiny-trained (committed)
    python -m core.train --out DIR --steps 400 --seed 0

Deterministic given its seed on a given machine (fixed data order, fixed init, single-process CPU
training). Training clips are generated on the fly with seeds disjoint from the committed fixtures
(1-4) and the held-out split (core.dataset.HELDOUT_SEED), encoded to H.264 and decoded through the
suite's own sampler, so the model trains on exactly what the benchmark feeds it. The model answers
the anomaly prompt with "Normal" or "Anomaly"; its accuracy on the held-out split is reported by the
suite itself (bench/test_reference_model.py).

The architecture is the embedded tiny model's, with a narrower vision tower (hidden 128, one head
of 128) so the committed bf16 weights stay under 5 MiB.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from core import paths

TRAIN_SEED0 = 10_000
OUT_DEFAULT = paths.FIXTURES_DIR / "models" / "tiny-trained"
VISION = {"depth": 2, "hidden_size": 128, "intermediate_size": 256, "num_heads": 1,
          "fullatt_block_indexes": [1], "window_size": 112}


def make_examples(count: int, *, first_seed: int, workdir: Path):
    """``count`` (frames, label) pairs: half normal, half anomalies of every kind, in a fixed order."""
    from core import synth
    from core.runner import FrameCache
    from core.settings import Settings
    from core.video import VideoClip

    spec = Settings().sampling()
    cache = FrameCache(max_bytes=2**40)
    out = []
    for i in range(count):
        kind = "normal" if i % 2 == 0 else synth.KINDS_ANOMALY[(i // 2) % len(synth.KINDS_ANOMALY)]
        seed = first_seed + i
        path = synth.encode(synth.render_clip(kind, seed), workdir / f"{kind}_{seed}.mp4")
        out.append((cache.get(VideoClip(path=path, id=path.stem), spec), synth.label_of(kind)))
        path.unlink()
    return out


def build_untrained(directory: Path, *, seed: int) -> None:
    """The architecture to train, randomly initialised, saved as an HF directory."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from core.models import qwen_vl, tokenizer as tok

    tokenizer = tok.build_tokenizer()
    ids = tok.special_token_ids(tokenizer)
    text = {**qwen_vl.TINY_TEXT, "vocab_size": -(-len(tokenizer) // 128) * 128}
    config = qwen_vl.make_config(text, VISION, ids)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"],
                                               pad_token_id=ids["pad_token_id"], do_sample=False)
    model.save_pretrained(directory, safe_serialization=True)
    qwen_vl.save_support_files(directory, tokenizer, qwen_vl.make_processor(tokenizer))


def train(out: Path, *, steps: int, batch: int, lr: float, examples: int, seed: int,
          max_minutes: float) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from core.backends.base import Request
    from core.families import family
    from core.tasks import AnomalyTask
    from core.video import VideoClip

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_untrained(tmp / "init", seed=seed)
        print(f"rendering {examples} training clips ...", file=sys.stderr)
        data = make_examples(examples, first_seed=TRAIN_SEED0 + seed * 100_000, workdir=tmp)
        processor = AutoProcessor.from_pretrained(tmp / "init", local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(tmp / "init", dtype=torch.float32,
                                                            local_files_only=True)
    model.train()
    fam, task = family("qwen2_5_vl"), AnomalyTask()
    tok = processor.tokenizer
    answer_ids = {c: tok.encode(c, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
                  for c in task.labels}
    clip = VideoClip(path=Path("train.mp4"), id="train")
    # Processor outputs once per clip (the answers have equal token counts: no padding needed).
    prepared = []
    for frames, label in data:
        x = fam.hf_inputs(processor, Request(clip=clip, frames=frames, messages=task.messages(clip),
                                             candidates=list(task.labels)))
        prepared.append((x, label))
    prompt_len = prepared[0][0]["input_ids"].shape[1]
    # No weight decay, a loose clip: the first steps have gradient norms near 20, and clipping them
    # to 1 (as LLM recipes do) kept this from-scratch model at chance for hundreds of steps.
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, steps // 25)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    log: list[float] = []
    step = 0
    for step in range(steps):
        items = [prepared[i] for i in torch.randint(len(prepared), (batch,), generator=gen).tolist()]
        ids = torch.cat([torch.cat([x["input_ids"], torch.tensor([answer_ids[lab]])], 1) for x, lab in items])
        labels = ids.clone()
        labels[:, :prompt_len] = -100
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels,
                     pixel_values_videos=torch.cat([x["pixel_values_videos"] for x, _ in items]),
                     video_grid_thw=torch.cat([x["video_grid_thw"] for x, _ in items]),
                     second_per_grid_ts=torch.cat([x["second_per_grid_ts"] for x, _ in items])).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        opt.step()
        sched.step()
        log.append(loss.item())
        if step % 20 == 0 or step == steps - 1:
            recent = sum(log[-20:]) / len(log[-20:])
            print(f"step {step:4d}/{steps} loss {recent:.4f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{(time.perf_counter() - t_start) / 60:.1f} min", file=sys.stderr, flush=True)
        if time.perf_counter() - t_start > max_minutes * 60:
            print(f"stopping at step {step}: the {max_minutes}-minute budget is spent", file=sys.stderr)
            break
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    from core.models import qwen_vl

    qwen_vl.save_support_files(out, tok, processor)
    record = {"recipe": "tiny-qwen2.5-vl-trained", "seed": seed, "steps_run": step + 1, "steps": steps,
              "batch": batch, "lr": lr, "examples": examples, "first_train_seed": TRAIN_SEED0 + seed * 100_000,
              "final_loss": sum(log[-20:]) / len(log[-20:]), "minutes": (time.perf_counter() - t_start) / 60,
              "weights_sha256": qwen_vl.weights_digest(out), "torch": torch.__version__}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT_DEFAULT)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--examples", type=int, default=384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=14.0)
    a = p.parse_args(argv)
    record = train(a.out, steps=a.steps, batch=a.batch, lr=a.lr, examples=a.examples, seed=a.seed,
                   max_minutes=a.max_minutes)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
