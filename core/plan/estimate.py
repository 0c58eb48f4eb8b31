"""A memory and context budget before loading: weights as the backend will store them, plus, for the
clip that produces the most video tokens, the KV cache, the activations of the language model and
the vision tower, and the frames themselves. Printed by ``vqbench run`` so a user sees that a run
will not fit before waiting for it to fail; a clip over the budget fails alone, with the option to
lower in its message; an engine whose weights cannot fit is refused with a capability verdict
(``plan_budget``), its memory rule read from the catalog (``BackendInfo.preallocates_memory``).

Frame counts come from the header probe (``core.inputs.video.sniff``): a 2-minute clip at 4 fps samples
480 frames, 19440 video tokens at 250x250. Clips whose length the header does not give (raw
streams) are checked again once decoded, with the real count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.base.errors import ConfigError
from core.inputs import sampling
from core.inputs.sampling import SamplingSpec
from core.models.shape import ModelShape
from core.plan.formats import QuantFormat

if TYPE_CHECKING:
    from core.plan.capability import CapabilityVerdict

TEXT_TOKENS = 256
"""Prompt tokens besides the video (chat template, question, options): an allowance; the anomaly
prompt takes about 93, a multiple-choice question with four options about 150."""


def count_params(config_dir: Path) -> dict[str, int]:
    """Parameters of the language-model linears and of everything else, from config (meta device)."""
    import torch
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(config_dir, local_files_only=True)
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(cfg)
    lm_linear = other = 0
    for name, p in model.named_parameters():
        if ".language_model." in f".{name}" and name.endswith(".weight") and p.dim() == 2 and "embed" not in name:
            lm_linear += p.numel()
        else:
            other += p.numel()
    return {"lm_linear": lm_linear, "other": other}


@dataclass(frozen=True)
class ClipCost:
    """What one clip will put through the model: sampled frames, their size, video tokens."""

    clip: str
    frames: int
    height: int
    width: int
    video_tokens: int
    vision_patches: int

    @property
    def prompt_tokens(self) -> int:
        return self.video_tokens + TEXT_TOKENS

    @property
    def frame_bytes(self) -> int:
        """Decoded uint8 RGB frames."""
        return self.frames * self.height * self.width * 3

    def describe(self) -> str:
        return (f"{self.frames} frames at {self.width}x{self.height} = {self.video_tokens} video tokens")


def expected_frames(spec: SamplingSpec, *, total_frames: int | None, fps: float | None, height: int,
                    width: int) -> tuple[int, int, int] | None:
    """(frames, height, width) the sampler will produce for a video with these header facts; None
    when the length is unknown or the facts do not sample (the decoder then says why)."""
    if not total_frames or height < 1 or width < 1:
        return None
    fps = fps if fps and fps > 0 else 30.0
    try:
        n = (len(sampling.sample_indices(spec, total_frames=total_frames, video_fps=fps))
             if total_frames >= sampling.FRAME_FACTOR else sampling.FRAME_FACTOR)
        h, w = sampling.frame_size(spec, height=height, width=width, nframes=max(n, sampling.FRAME_FACTOR))
    except ConfigError:
        return None
    return n, h, w


def clip_cost(clip: str, frames: int, height: int, width: int, *, family, config: dict[str, Any]) -> ClipCost:
    return ClipCost(clip=clip, frames=frames, height=height, width=width,
                    video_tokens=family.video_tokens(config, frames, height, width),
                    vision_patches=family.vision_patches(config, frames, height, width))


def activation_bytes(shape: ModelShape, config: dict[str, Any], cost: ClipCost | None, prompt_tokens: int, *,
                     eager_attention: bool = False) -> dict[str, int]:
    """A rough activation peak (bf16), one layer at a time: the language model's prefill, the vision
    tower over every patch, the frames as float32 pixel values, and eager attention's score matrix."""
    lm = prompt_tokens * shape.hidden * 2 * 8 + prompt_tokens * shape.intermediate * 2 * 3
    vision = pixels = 0
    if cost is not None:
        vis = config.get("vision_config") or {}
        vh, vi = int(vis.get("hidden_size") or 0), int(vis.get("intermediate_size") or 0)
        vision = cost.vision_patches * (6 * vh + 3 * vi) * 2
        pixels = cost.frame_bytes * 4
    scores = shape.heads * prompt_tokens * prompt_tokens * 2 if eager_attention else 0
    return {"lm": int(lm), "vision": int(vision), "pixels": int(pixels), "attention_scores": int(scores)}


def estimate(config_dir: Path, fmt: QuantFormat, *, backend: str, prompt_tokens: int | None = None,
             max_new_tokens: int = 7, clip: ClipCost | None = None, eager_attention: bool = False,
             params: dict[str, int] | None = None) -> dict[str, Any]:
    """Estimated device bytes: weights, KV cache, activations (and the frames) for one request of
    ``clip`` (or of ``prompt_tokens`` text tokens when no clip is given)."""
    shape = ModelShape.from_dir(config_dir)
    config = json.loads((Path(config_dir) / "config.json").read_text())
    params = params or count_params(config_dir)
    per = fmt.stored_bytes_per_weight(backend)
    fake = fmt.backends.get(backend) is not None and fmt.backends[backend].how == "fake-quant"
    weights = params["lm_linear"] * per + params["other"] * 2.0
    tokens = clip.prompt_tokens if clip is not None else (prompt_tokens or TEXT_TOKENS)
    kv = shape.kv_bytes_per_token(1 if fmt.kv_cache == "fp8" else 2) * (tokens + max_new_tokens)
    act = activation_bytes(shape, config, clip, tokens, eager_attention=eager_attention)
    activations = sum(act.values())
    total = weights + kv + activations
    return {"weights_bytes": int(weights), "kv_cache_bytes": int(kv), "activation_bytes": int(activations),
            "activations": act, "frame_bytes": clip.frame_bytes if clip else 0, "prompt_tokens": tokens,
            "total_bytes": int(total), "fake_quant_no_savings": fake, "params": params}


@dataclass(frozen=True)
class Budget:
    """What one request may take on this engine: a context length and (where memory grows with the
    clip, i.e. HF) a device memory budget. ``check`` says why a clip does not fit, naming the option."""

    backend: str
    device: str
    """Printed in messages ('NVIDIA H200', 'host memory')."""
    context_tokens: int | None
    context_option: str
    """Where the context limit comes from: '--max-model-len' or "the model's max_position_embeddings"."""
    memory_bytes: float | None
    """Device bytes the engine may use; None when memory does not grow per clip (vLLM pre-allocates)."""
    settings_note: str
    """The sampling options as given, for the message ('--fps 4, --max-frames 768, --resolution 250x250')."""

    def check(self, cost: ClipCost, *, need_bytes: float | None = None, max_new_tokens: int = 7) -> str | None:
        """None when ``cost`` fits, else what to lower (the message of the clip's error)."""
        lower = f"lower --fps, --max-frames or --resolution (now {self.settings_note})"
        if self.context_tokens is not None and cost.prompt_tokens + max_new_tokens > self.context_tokens:
            raise_len = ", or raise --max-model-len" if self.context_option == "--max-model-len" else ""
            return (f"about {cost.prompt_tokens} prompt tokens ({cost.describe()}) exceed the "
                    f"{self.context_tokens}-token context ({self.context_option}): {lower}{raise_len}")
        if self.memory_bytes is not None and need_bytes is not None and need_bytes > self.memory_bytes:
            return (f"needs about {need_bytes / 2**30:.1f} GiB ({cost.describe()}), over the "
                    f"{self.memory_bytes / 2**30:.1f} GiB of {self.device}: {lower}"
                    + (", or lower --max-model-len" if self.context_option == "--max-model-len" else ""))
        return None


@dataclass
class ClipBudget:
    """An engine's ``Budget`` with the cost of every clip whose length the header gave, and the memory
    each clip needs (``need``: None where memory is reserved at load or no estimate could be made)."""

    family: Any
    config: dict[str, Any]
    budget: Budget
    need: Callable[[ClipCost], float | None]
    max_new_tokens: int
    costs: dict[str, ClipCost] = field(default_factory=dict)
    """Expected cost per clip id, from header probes (absent: length unknown until decoded)."""

    def cost(self, clip_id: str, frames: int, height: int, width: int) -> ClipCost:
        return clip_cost(clip_id, frames, height, width, family=self.family, config=self.config)

    def problem(self, cost: ClipCost) -> str | None:
        return self.budget.check(cost, need_bytes=self.need(cost), max_new_tokens=self.max_new_tokens)

    def frames_problem(self, clip_id: str, shape: tuple[int, ...]) -> str | None:
        """Why decoded frames of ``shape`` (frames, height, width, channels) do not fit; None when they
        do, or when their cost cannot be worked out (an estimate is advice, never a blocker)."""
        n, h, w = shape[:3]
        try:
            cost = self.cost(clip_id, n, h, w)
        except Exception:  # noqa: BLE001 - a family without a token formula: no check
            return None
        return self.problem(cost)


def plan_budget(plan, dev, clips, probes: dict[str, Any], settings,
                say: Callable[[str], None]) -> tuple[ClipBudget | None, CapabilityVerdict]:
    """The budget of engine ``plan`` (``core.plan.matrix.EnginePlan``) on device ``dev`` for ``clips``: their
    expected frames and tokens from the header ``probes``, the estimate for the longest (told through
    ``say``), and the verdict on the engine as a whole: refused when even the weights (or, where the
    engine reserves its memory at load, weights and one full-context KV cache) cannot fit. The budget is
    None when the model's config cannot be read (an estimate is advice: the run goes on)."""
    from core.models import registry
    from core.models.families import family as family_of
    from core.plan.capability import CapabilityVerdict, no
    from core.plan.catalog import backend_info

    spec, fmt, backend = plan.spec, plan.fmt, plan.engine.backend
    info = backend_info(backend)
    try:
        config_dir = registry.materialize(spec)
        config = json.loads((config_dir / "config.json").read_text())
        fam = family_of(spec.family)
        shape = ModelShape.from_config(config)
    except Exception as exc:  # noqa: BLE001 - an estimate is advice, never a blocker
        say(f"  memory estimate unavailable ({type(exc).__name__}: {exc})")
        return None, CapabilityVerdict(True)
    limit = shape.max_position_embeddings
    if info.context_option:
        context = settings.max_model_len if spec.kind == "shape" or not limit else min(limit, settings.max_model_len)
        option = info.context_option
    else:
        context, option = limit, "the model's max_position_embeddings"
    if dev.kind == "cuda" and dev.memory_gib:
        total_bytes = dev.memory_gib * 2**30
        where = f"{dev.memory_gib:.0f} GiB on {dev.name}"
    else:
        import psutil

        total_bytes = float(psutil.virtual_memory().available)
        where = f"{total_bytes / 2**30:.0f} GiB of available host memory (CPU run)"
    memory = None if info.preallocates_memory else total_bytes * 0.95
    sampling_note = (f"--fps {settings.fps:g}" if not settings.nframes else f"--nframes {settings.nframes}") + \
        f", --max-frames {settings.max_frames}, --resolution {settings.resolution or 'auto'}"
    eager = settings.attn_implementation == "eager"
    params: dict[str, Any] = {}

    def need(cost: ClipCost) -> float | None:
        if memory is None:
            return None
        try:
            if "params" not in params:
                params["params"] = count_params(config_dir)
            est = estimate(config_dir, fmt, backend=backend, clip=cost, params=params["params"],
                           max_new_tokens=settings.max_new_tokens, eager_attention=eager)
        except Exception:  # noqa: BLE001 - no estimate, no memory check (the context check stays)
            return None
        return est["total_bytes"]

    cb = ClipBudget(fam, config, Budget(backend=backend, device=where, context_tokens=context, context_option=option,
                                        memory_bytes=memory, settings_note=sampling_note),
                    need, settings.max_new_tokens)
    unknown = 0
    for clip in clips:
        p = probes.get(clip.id)
        n_h_w = None
        if p is not None and p.video:
            n_h_w = expected_frames(sampling.anchor(settings.sampling(), clip), total_frames=p.total_frames,
                                    fps=p.fps, height=p.height, width=p.width)
        if n_h_w is None:
            unknown += p is not None and p.video
            continue
        cb.costs[clip.id] = cb.cost(clip.id, *n_h_w)
    longest = max(cb.costs.values(), key=lambda c: (c.video_tokens, c.frame_bytes), default=None)
    try:
        est = estimate(config_dir, fmt, backend=backend, clip=longest, max_new_tokens=settings.max_new_tokens,
                       eager_attention=eager)
        params["params"] = est["params"]
    except Exception as exc:  # noqa: BLE001 - an estimate is advice, never a blocker
        say(f"  memory estimate unavailable ({type(exc).__name__}: {exc})")
        return cb, CapabilityVerdict(True)
    act = est["activations"]
    clip_text = (f"for the longest clip, {longest.clip}: {longest.describe()}, {longest.frame_bytes / 2**20:.0f} MiB "
                 f"of frames" if longest else "for a text-only prompt (no clip length known before decoding)")
    say(f"  estimated memory: {est['total_bytes'] / 2**30:.2f} GiB of {where}: weights "
        f"{est['weights_bytes'] / 2**30:.2f} GiB"
        f"{' (fake-quant: bf16 weights, no memory savings)' if est['fake_quant_no_savings'] else ''}, "
        f"KV cache {est['kv_cache_bytes'] / 2**20:.1f} MiB, activations {est['activation_bytes'] / 2**20:.0f} MiB "
        f"(language model {act['lm'] / 2**20:.0f}, vision {act['vision'] / 2**20:.0f}, pixels "
        f"{act['pixels'] / 2**20:.0f}) {clip_text}")
    if unknown:
        say(f"  {unknown} video{'s' if unknown > 1 else ''} of unknown length (raw streams): checked once decoded")
    weights = est["weights_bytes"]
    if dev.kind != "cuda":
        return cb, CapabilityVerdict(True)
    if not info.preallocates_memory and weights > total_bytes * 0.95:
        return cb, no(f"{spec.name} {fmt.id} needs ~{weights / 2**30:.1f} GiB for its weights alone; "
                      f"{dev.describe()} is too small")
    if info.preallocates_memory:
        reserved = total_bytes * settings.gpu_memory_utilization
        kv_full = shape.kv_bytes_per_token(1 if fmt.kv_cache == "fp8" else 2) * (context or 0)
        if weights + kv_full > reserved:
            return cb, no(
                f"{spec.name} {fmt.id} needs ~{(weights + kv_full) / 2**30:.1f} GiB (weights "
                f"{weights / 2**30:.1f} GiB + a KV cache for one {context}-token request) of the "
                f"{reserved / 2**30:.1f} GiB --gpu-memory-utilization {settings.gpu_memory_utilization:g} leaves: "
                f"lower {info.context_option} or raise --gpu-memory-utilization")
    return cb, CapabilityVerdict(True)
