"""Locating drift: full-vocabulary statistics from top-k + rest records (exact where they can be, a
lower bound where not), vision-tower comparisons per frame group, the +vit formats, and the
preprocessing fingerprint that tells a failing golden whether its inputs changed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import fingerprint, vocab
from core.metrics.vision import VisionKey, VisionStore, group_stats
from core.plan.formats import get_format
from core.plan.golden import compare, golden_payload, input_changes

pytestmark = pytest.mark.cpu


def dist(probs: dict[int, float], k: int) -> dict:
    top = sorted(probs.items(), key=lambda kv: -kv[1])[:k]
    return vocab.compact_pairs([[(t, math.log(p)) for t, p in top]], k=k)


def full_kl(p: dict[int, float], q: dict[int, float]) -> float:
    return sum(pi * math.log(pi / q[t]) for t, pi in p.items())


def test_kl_is_exact_when_the_top_k_hold_the_mass_and_a_lower_bound_otherwise():
    p = {0: 0.7, 1: 0.2, 2: 0.06, 3: 0.04}
    q = {0: 0.6, 1: 0.3, 2: 0.05, 3: 0.05}
    exact = vocab.clip_positions(dist(p, 4), dist(q, 4), ref_tokens=[0], cand_tokens=[0])[0]
    assert exact.kl == pytest.approx(full_kl(p, q), abs=1e-5) and exact.ref_rest == pytest.approx(0, abs=1e-5)
    cut = vocab.clip_positions(dist(p, 2), dist(q, 2), ref_tokens=[0], cand_tokens=[0])[0]
    assert 0 < cut.kl <= full_kl(p, q) and cut.ref_rest == pytest.approx(0.10, abs=1e-5)
    assert exact.same_top and exact.delta_p == pytest.approx(0.1, abs=1e-5) and not exact.bounded


def test_a_reference_top_token_outside_the_candidate_top_k_is_bounded():
    p = {5: 0.9, 6: 0.1}
    q = {6: 0.5, 7: 0.3, 5: 0.2}
    pos = vocab.clip_positions(dist(p, 2), dist(q, 2), ref_tokens=[5], cand_tokens=[6])[0]
    assert pos.bounded and not pos.same_top and pos.p_cand_top == pytest.approx(0.2, abs=1e-4)  # <= 2nd best 0.3


def test_positions_stop_where_the_prefixes_differ():
    row = [(1, math.log(0.9)), (2, math.log(0.1))]
    rec = vocab.compact_pairs([row, row, row], k=2)
    assert len(vocab.clip_positions(rec, rec, ref_tokens=[1, 1, 1], cand_tokens=[1, 1, 1])) == 3
    assert len(vocab.clip_positions(rec, rec, ref_tokens=[1, 2, 1], cand_tokens=[1, 1, 1])) == 2


def test_statistic_set_and_dominant_clips():
    pairs = {}
    for i, shift in enumerate([0.0, 0.01, 0.02, 0.3]):
        p, q = {0: 0.8, 1: 0.2}, {0: 0.8 - shift, 1: 0.2 + shift}
        pairs[f"clip{i}"] = ({"vocab": dist(p, 2), "token_ids": [0]}, {"vocab": dist(q, 2), "token_ids": [0]})
    pairs["old"] = ({"token_ids": [0]}, {"token_ids": [0]})  # a record from before vocab was stored
    drift = vocab.compare_clips(pairs)
    a = drift.answer
    kls = sorted(pos[0].kl for pos in drift.clips.values())
    assert a.n == 4 and a.kl_mean == pytest.approx(np.mean(kls)) and a.kl_se == pytest.approx(np.std(kls, ddof=1) / 2)
    assert a.kl_percentiles["p50"] == pytest.approx(np.percentile(kls, 50)) and a.kl_max == pytest.approx(kls[-1])
    assert set(a.kl_percentiles) == {"p50", "p90", "p99", "p99.9"}
    assert a.same_top == 4 and a.same_top_se == 0.0
    assert a.delta_p_rms == pytest.approx(math.sqrt(np.mean(np.square([0, 0.01, 0.02, 0.3]))), abs=1e-4)
    assert drift.dominant[0][0] == "clip3" and drift.dominant[0][1] > 0.9 and drift.missing == ("old",)
    assert vocab.compare_clips({"x": ({}, {})}) is None
    assert drift.to_dict()["dominant"][0]["clip"] == "clip3"


def test_compact_from_logits():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[4.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    out = vocab.compact(torch.log_softmax(logits, dim=-1), k=2)
    assert out["ids"] == [[0, 1], [0, 1]] or out["ids"][0] == [0, 1]
    assert out["rest"][1] == pytest.approx(0.5, abs=1e-3) and len(out["logprobs"][0]) == 2


def test_vision_groups_and_store():
    torch = pytest.importorskip("torch")
    ref = torch.randn(8, 16)
    cand = ref.clone()
    cand[4:] *= 1.1  # the second frame group drifts by 10%
    stats = group_stats(ref, cand, [4, 4])
    assert stats[0] == {"cos": 1.0, "rel_err": 0.0, "tokens": 4}
    assert stats[1]["cos"] == pytest.approx(1.0) and stats[1]["rel_err"] == pytest.approx(0.1, rel=1e-3)
    store = VisionStore()
    key = VisionKey("m", "hf", "cpu", "clip.mp4", (0, 1), (2, 28, 28, 3))
    assert store.observe(key, reference=False, embeddings=cand, groups=[4, 4], reference_format="bf16") is None
    assert store.observe(key, reference=True, embeddings=ref, groups=[4, 4], reference_format="bf16") is None
    got = store.observe(key, reference=False, embeddings=cand, groups=[4, 4], reference_format="bf16")
    assert got["reference"] == "bf16" and got["rel_err_max"] == pytest.approx(0.1, rel=1e-3) and got["cos_min"] <= 1.0


def test_vit_formats():
    fmt = get_format("fp8+vit")
    assert fmt.vision and fmt.id == "fp8+vit" and set(fmt.backends) == {"hf"}
    assert "missing tensor names" in fmt.not_supported["vllm"]
    assert get_format("fp8+kv_fp8+vit").id == "fp8+vit+kv_fp8"
    with pytest.raises(Exception, match="formats of modelopt only"):
        get_format("bnb_int8+vit")
    from core.plan.capability import check
    from core.plan.device import CPU

    assert not check("vllm", fmt, CPU, check_packages=False).runnable


def test_vit_config_quantizes_the_vision_tower():
    pytest.importorskip("modelopt.torch.quantization")
    from core.quant.modelopt_q import build_config

    names = lambda cfg: {e["quantizer_name"] for e in cfg["quant_cfg"] if e.get("enable") is False}  # noqa: E731
    assert "*visual*" in names(build_config(get_format("fp8")))
    assert "*visual*" not in names(build_config(get_format("fp8+vit"))) and "*lm_head*" in names(
        build_config(get_format("fp8+vit")))


META = {"model": "tiny", "backend": "hf", "format": "bf16", "task": "anomaly", "device_class": "cpu"}


def fingerprinted(label: str, *, pixels: str = "aa", processor: str = "bb", libavcodec: str = "62.28.102") -> dict:
    r = {"video": "v1", "predicted": label, "parsed": None, "candidate_logprobs": {"Normal": -0.1, "Anomaly": -2.5},
         "frames": {"indices": [0, 15, 30], "height": 252, "width": 252},
         "inputs": {"pixels_sha256": pixels, "processor_sha256": processor,
                    "decoder": {"av": "18.1.0", "libavcodec": libavcodec},
                    "processor": {"class": "Qwen2_5_VLProcessor", "transformers": "5.23.0"}}}
    return golden_payload("tiny-hf-bf16-cpu-anomaly", META, [r])


def test_golden_fingerprint_is_stored_and_never_compared():
    g = fingerprinted("Normal")
    assert g["videos"]["v1"]["inputs"] == {"frames": [0, 15, 30], "size": [252, 252], "pixels": "aa", "processor": "bb"}
    assert g["preprocessing"]["decoder"]["libavcodec"] == "62.28.102"
    assert compare(g, fingerprinted("Normal", pixels="zz"), tolerance=0.05) == []  # inputs alone never fail


def test_a_failing_golden_says_whether_its_inputs_changed():
    old = fingerprinted("Normal")
    same = input_changes(old, fingerprinted("Anomaly"))
    assert len(same) == 1 and "unchanged" in same[0] and "only the model's outputs moved" in same[0]
    moved = input_changes(old, fingerprinted("Anomaly", pixels="zz", libavcodec="63.0.100"))
    assert moved[0].startswith("inputs CHANGED")
    assert any("libavcodec 62.28.102 -> 63.0.100" in m for m in moved)
    assert any("decoded pixels differ for 1/1 videos (v1)" in m for m in moved)
    legacy = {k: v for k, v in old.items() if k != "preprocessing"}
    legacy["videos"] = {"v1": {k: v for k, v in old["videos"]["v1"].items() if k != "inputs"}}
    assert "no preprocessing fingerprint" in input_changes(legacy, fingerprinted("Normal"))[0]
    assert compare(legacy, fingerprinted("Normal"), tolerance=0.05) == []  # old goldens keep working


def test_fingerprint_hashes():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2, 2, 0] = 1
    assert fingerprint.pixels_sha256(a) != fingerprint.pixels_sha256(b) and len(fingerprint.pixels_sha256(a)) == 16
    assert fingerprint.pixels_sha256(a) != fingerprint.pixels_sha256(a.reshape(4, 2, 4, 3))  # shape counts
    torch = pytest.importorskip("torch")
    x = {"pixel_values_videos": torch.ones(2, 3, dtype=torch.bfloat16), "video_grid_thw": torch.tensor([[1, 2, 2]])}
    y = {**x, "pixel_values_videos": torch.ones(2, 3, dtype=torch.float32)}
    assert fingerprint.processor_sha256(x) != fingerprint.processor_sha256(y)
    assert fingerprint.processor_sha256(x) == fingerprint.processor_sha256(dict(reversed(list(x.items()))))
    assert "av" in fingerprint.decoder_versions()
