"""Train the reference model: a tiny Qwen2.5-VL that actually sees the fixture task.

    python -m core.tools.train                       # writes fixtures/models/tiny-trained (committed)
    python -m core.tools.train --out DIR --steps 400 --seed 0

Deterministic given its seed on a given machine (fixed data order, fixed init, single-process CPU
training). Training clips are generated on the fly with seeds disjoint from the committed fixtures
(1-4) and the held-out split (core.inputs.dataset.HELDOUT_SEED), encoded to H.264 and decoded through the
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

from core.base import paths

TRAIN_SEED0 = 10_000
VALIDATION = 48


def _batch(inputs: list[dict], answers: list[list[int]] | None = None) -> dict:
    """Stack processor outputs (every key: mm_token_type_ids drives the 3-D rope positions), with
    the answer tokens appended as text when given."""
    import torch

    out = {}
    for key in inputs[0].keys():
        parts = [x[key] for x in inputs]
        if answers is not None and key in ("input_ids", "attention_mask", "mm_token_type_ids"):
            fill = {"input_ids": None, "attention_mask": 1, "mm_token_type_ids": 0}[key]
            parts = [torch.cat([p, torch.tensor([a if fill is None else [fill] * len(a)], dtype=p.dtype)], 1)
                     for p, a in zip(parts, answers)]
        out[key] = torch.cat(parts)
    out["pixel_values_videos"] = out["pixel_values_videos"].float()
    return out


def _accuracy(model, items, answer_ids, prompt_len) -> float:
    """Share of ``items`` whose first answer token scores the right label above the other."""
    import torch

    normal, anomaly = answer_ids["Normal"][0], answer_ids["Anomaly"][0]
    right = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(items), 8):
            chunk = items[i:i + 8]
            logits = model(**_batch([x for x, _ in chunk])).logits
            for j, (_, label) in enumerate(chunk):
                pred = "Anomaly" if logits[j, prompt_len - 1, anomaly] > logits[j, prompt_len - 1, normal] else "Normal"
                right += pred == label
    model.train()
    return right / len(items)
OUT_DEFAULT = paths.FIXTURES_DIR / "models" / "tiny-trained"
VISION = {"depth": 2, "hidden_size": 128, "intermediate_size": 256, "num_heads": 1,
          "fullatt_block_indexes": [1], "window_size": 112}


def make_examples(count: int, *, first_seed: int, workdir: Path):
    """``count`` (frames, label) pairs: half normal, half anomalies of every kind, in a fixed order."""
    from core.cells.runner import FrameCache
    from core.inputs import synth
    from core.inputs.video import VideoClip
    from core.plan.settings import Settings

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

    from core.models import qwen_vl
    from core.models import tokenizer as tok

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
          max_minutes: float, warm_subset: int = 48, warm_steps: int = 150) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from core.inputs.requests import Request
    from core.inputs.tasks import AnomalyTask
    from core.inputs.video import VideoClip
    from core.models.families import family

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        build_untrained(tmp / "init", seed=seed)
        print(f"rendering {examples} training and {VALIDATION} validation clips ...", file=sys.stderr)
        data = make_examples(examples, first_seed=TRAIN_SEED0 + seed * 100_000, workdir=tmp)
        val_data = make_examples(VALIDATION, first_seed=TRAIN_SEED0 + seed * 100_000 + 50_000, workdir=tmp)
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
    def prepare(examples_):
        out_ = []
        for frames, label in examples_:
            x = fam.hf_inputs(processor, Request(clip=clip, frames=frames, messages=task.messages(clip),
                                                 candidates=list(task.labels)))
            x["pixel_values_videos"] = x["pixel_values_videos"].to(torch.bfloat16)  # halves the memory
            out_.append((x, label))
        return out_

    prepared, validation = prepare(data), prepare(val_data)
    del data, val_data
    prompt_len = prepared[0][0]["input_ids"].shape[1]
    # No weight decay, a loose clip: the first steps have gradient norms near 20, and clipping them
    # to 1 (as LLM recipes do) kept this from-scratch model at chance for hundreds of steps.
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, steps // 25)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    log: list[float] = []
    best: tuple[float, int, dict | None] = (-1.0, -1, None)
    step = 0
    for step in range(steps):
        # Curriculum: a from-scratch model sits at chance on the full set for hundreds of steps;
        # on a small subset it first fits (finding the colour/shape cues), then generalises.
        pool = warm_subset if step < warm_steps else len(prepared)
        items = [prepared[i] for i in torch.randint(pool, (batch,), generator=gen).tolist()]
        batch_inputs = _batch([x for x, _ in items], [answer_ids[lab] for _, lab in items])
        labels = batch_inputs["input_ids"].clone()
        labels[:, :prompt_len] = -100
        loss = model(**batch_inputs, labels=labels).loss
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
        if step >= warm_steps and (step % 50 == 0 or step == steps - 1):
            acc = _accuracy(model, validation, answer_ids, prompt_len)
            print(f"      validation accuracy {acc:.3f}", file=sys.stderr, flush=True)
            if acc >= best[0]:
                best = (acc, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if time.perf_counter() - t_start > max_minutes * 60:
            print(f"stopping at step {step}: the {max_minutes}-minute budget is spent", file=sys.stderr)
            break
    if best[2] is not None:  # early stopping on the validation split (disjoint from held-out)
        model.load_state_dict(best[2])
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    from core.models import qwen_vl

    qwen_vl.save_support_files(out, tok, processor)
    record = {"recipe": "tiny-qwen2.5-vl-trained", "seed": seed, "steps_run": step + 1, "steps": steps,
              "batch": batch, "lr": lr, "examples": examples, "warm_subset": warm_subset, "warm_steps": warm_steps,
              "first_train_seed": TRAIN_SEED0 + seed * 100_000,
              "final_loss": sum(log[-20:]) / len(log[-20:]), "validation_accuracy": best[0],
              "best_step": best[1], "validation_clips": VALIDATION, "minutes": (time.perf_counter() - t_start) / 60,
              "weights_sha256": qwen_vl.weights_digest(out), "torch": torch.__version__}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT_DEFAULT)
    p.add_argument("--steps", type=int, default=520)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--examples", type=int, default=640)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=14.0)
    p.add_argument("--warm-subset", type=int, default=48, help="curriculum: first train on this many clips")
    p.add_argument("--warm-steps", type=int, default=150, help="... for this many steps")
    a = p.parse_args(argv)
    record = train(a.out, steps=a.steps, batch=a.batch, lr=a.lr, examples=a.examples, seed=a.seed,
                   max_minutes=a.max_minutes, warm_subset=a.warm_subset, warm_steps=a.warm_steps)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
