"""Synthetic traffic clips with ground truth: normal traffic and four kinds of anomaly.

A top-down road with lanes (cars drive forward in their lane direction). Anomalies: a pedestrian
crossing the road, a wrong-way vehicle, a collision (two cars meet and stop, debris appears), and
an object (a dog or a box) on the road. Every clip is a pure function of (kind, seed), so the
committed fixtures and the training set of the reference model are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = "3"
"""Bumped whenever rendering changes: generated datasets in the cache are keyed by it."""

KINDS_NORMAL = ("normal",)
KINDS_ANOMALY = ("pedestrian", "wrong_way", "collision", "object")
KINDS = KINDS_NORMAL + KINDS_ANOMALY

WIDTH, HEIGHT = 320, 240
FPS = 12
SECONDS = 4.0

_GRASS = (60, 110, 50)
_ROAD = (85, 85, 90)
_MARK = (230, 230, 220)
_CAR_COLORS = [(200, 40, 40), (40, 80, 200), (230, 200, 40), (240, 240, 240), (30, 30, 30), (40, 160, 90)]


def label_of(kind: str) -> str:
    """'Normal' for normal traffic, 'Anomaly' for every anomaly kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind '{kind}'; known: {', '.join(KINDS)}")
    return "Normal" if kind in KINDS_NORMAL else "Anomaly"


@dataclass
class _Car:
    lane: int
    y: float
    speed: float  # pixels per frame, sign = direction (+ down the screen)
    color: tuple[int, int, int]
    length: int
    width: int


def _lanes(w: int) -> tuple[int, int, list[int], float]:
    """Road edges, lane centres and lane width: a close top-down view, the road fills the frame."""
    road_l, road_r = int(w * 0.04), int(w * 0.96)
    lane_w = (road_r - road_l) / 4
    centers = [int(road_l + lane_w * (i + 0.5)) for i in range(4)]
    return road_l, road_r, centers, lane_w


def _lane_direction(lane: int) -> int:
    return 1 if lane < 2 else -1  # left two lanes drive down, right two drive up


def _background(w: int, h: int, offset: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _GRASS
    road_l, road_r, _, lane_w = _lanes(w)
    img[:, road_l:road_r] = _ROAD
    for i in range(1, 4):
        x = int(road_l + lane_w * i)
        if i == 2:  # solid centre line
            img[:, x - 2:x + 2] = (230, 200, 60)
            continue
        for y0 in range(-48 + (offset % 48), h, 48):
            img[max(0, y0):max(0, y0 + 24), x - 1:x + 2] = _MARK
    img[:, road_l:road_l + 3] = _MARK
    img[:, road_r - 3:road_r] = _MARK
    return img


def _rect(img: np.ndarray, cx: float, cy: float, w: float, h: float, color) -> None:
    x0, x1 = int(round(cx - w / 2)), int(round(cx + w / 2))
    y0, y1 = int(round(cy - h / 2)), int(round(cy + h / 2))
    H, W = img.shape[:2]
    x0, x1, y0, y1 = max(0, x0), min(W, x1), max(0, y0), min(H, y1)
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1] = color


def _draw_car(img: np.ndarray, x: float, y: float, car: _Car) -> None:
    _rect(img, x, y, car.width, car.length, car.color)
    # windscreen at the front, so the direction of travel is visible in a single frame
    front = y + np.sign(car.speed or 1) * car.length * 0.22
    _rect(img, x, front, car.width * 0.7, car.length * 0.16, (150, 200, 230))


def render_clip(kind: str, seed: int, *, width: int = WIDTH, height: int = HEIGHT,
                fps: int = FPS, seconds: float = SECONDS) -> np.ndarray:
    """Render a clip as uint8 frames (T, H, W, 3). Deterministic in (kind, seed, size).

    Sensor noise is drawn anew for every frame, as a camera's is (a pattern fixed per clip would
    also be a fingerprint a model can memorize instead of learning the task).
    """
    label_of(kind)
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    n_frames = int(round(fps * seconds))
    _, _, centers, lane_w = _lanes(width)
    cw, cl = lane_w * 0.55, lane_w * 1.05  # car width, length
    unit = lane_w / 40  # speeds scale with the view
    wrap = height + 2 * cl
    cars: list[_Car] = []
    for lane in range(4):
        first = float(rng.uniform(0, wrap))
        speed = _lane_direction(lane) * float(rng.uniform(2.0, 3.5)) * unit  # one speed per lane: no overlaps
        for k in range(int(rng.integers(1, 3))):
            cars.append(_Car(lane=lane, y=first + k * wrap / 2,
                             speed=speed,
                             color=_CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))], length=int(cl), width=int(cw)))
    event_start = int(rng.integers(0, int(n_frames * 0.2) + 1))
    special: dict = {}
    if kind == "wrong_way":
        lane = int(rng.integers(4))
        special["car"] = _Car(lane=lane, y=height * (0.8 if _lane_direction(lane) > 0 else 0.2),
                              speed=-_lane_direction(lane) * float(rng.uniform(1.5, 2.5)) * unit,
                              color=(250, 120, 20), length=int(cl * 1.1), width=int(cw * 1.05))
    elif kind == "collision":
        lane = int(rng.integers(2))  # two cars in one downward lane: the rear one is faster
        lead_y = float(rng.uniform(height * 0.55, height * 0.7))
        special["lead"] = _Car(lane=lane, y=lead_y, speed=0.8 * unit, color=(40, 80, 200),
                               length=int(cl), width=int(cw))
        special["rear"] = _Car(lane=lane, y=lead_y - cl * 1.8, speed=3.5 * unit, color=(200, 40, 40),
                               length=int(cl), width=int(cw))
    elif kind == "pedestrian":
        special["ped_y"] = float(rng.uniform(height * 0.3, height * 0.7))
        special["ped_dir"] = 1 if rng.random() < 0.5 else -1
    elif kind == "object":
        special["obj_lane"] = int(rng.integers(4))
        special["obj_y"] = float(rng.uniform(height * 0.3, height * 0.7))
        special["obj_color"] = (205, 135, 50) if rng.random() < 0.5 else (175, 110, 60)  # a fallen crate
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    scroll = int(rng.integers(48))
    for t in range(n_frames):
        img = _background(width, height, scroll + int(3 * unit * t))
        for car in cars:
            if kind == "object" and car.lane == special["obj_lane"]:
                continue  # the blocked lane is empty around the object
            if kind == "collision" and car.lane == special["lead"].lane:
                continue
            y = (car.y + car.speed * t) % wrap - cl
            _draw_car(img, centers[car.lane], y, car)
        if kind == "wrong_way" and t >= event_start:
            c = special["car"]
            _draw_car(img, centers[c.lane], c.y + c.speed * (t - event_start), c)
        elif kind == "collision":
            lead, rear = special["lead"], special["rear"]
            ly, ry = lead.y + lead.speed * t, rear.y + rear.speed * t
            if ry + rear.length >= ly:  # impact: both stop, debris scatters
                special.setdefault("hit", (ly, ry))
                ly, ry = special["hit"]
            x = centers[lead.lane]
            _draw_car(img, x, ly, lead)
            _draw_car(img, x + (lane_w * 0.12 if "hit" in special else 0), ry, rear)
            if "hit" in special:
                mid = (ly + ry) / 2
                _rect(img, x + lane_w * 0.55, mid, lane_w * 0.3, lane_w * 0.3, (250, 250, 250))
                _rect(img, x - lane_w * 0.5, mid - lane_w * 0.2, lane_w * 0.28, lane_w * 0.28, (250, 160, 0))
                _rect(img, x + lane_w * 0.1, mid + lane_w * 0.55, lane_w * 0.25, lane_w * 0.2, (250, 250, 250))
        elif kind == "pedestrian" and t >= event_start:
            road_l, road_r = _lanes(width)[:2]
            span = road_r - road_l - lane_w * 0.5
            progress = min(1.0, (t - event_start) / max(1, n_frames - event_start))
            x = (road_l + lane_w * 0.25 + span * progress if special["ped_dir"] > 0
                 else road_r - lane_w * 0.25 - span * progress)
            _rect(img, x, special["ped_y"], lane_w * 0.28, lane_w * 0.28, (250, 210, 170))                 # head
            _rect(img, x, special["ped_y"] + lane_w * 0.4, lane_w * 0.38, lane_w * 0.5, (220, 30, 160))  # body
        elif kind == "object":
            cx, cy = centers[special["obj_lane"]], special["obj_y"]
            _rect(img, cx, cy, lane_w * 0.75, lane_w * 0.6, special["obj_color"])
            _rect(img, cx, cy, lane_w * 0.75, lane_w * 0.08, (240, 240, 230))  # cargo strap
        frames[t] = img
    grain = np.random.default_rng([seed, 99]).integers(-6, 7, size=frames.shape, dtype=np.int16)
    return np.clip(frames.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def encode(frames: np.ndarray, path: Path, *, fps: int = FPS, crf: int = 30, codec: str = "libx264",
           pix_fmt: str = "yuv420p") -> Path:
    """Encode frames to a video file for real (H.264 MP4 by default), deterministically."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium", "threads": "1",
                              "x264-params": "threads=1:lookahead-threads=1:sync-lookahead=0:sliced-threads=0"}
        stream.codec_context.flags |= getattr(stream.codec_context.flags.__class__, "BITEXACT", 0)
        # One encoder thread: FFmpeg's frame threading makes x264's output depend on timing (seen as
        # different bytes under load), and the fixtures must be byte-reproducible.
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def encode_large(path: Path, *, kind: str = "normal", seed: int = 0, width: int = 1920, height: int = 1080,
                 fps: int = 60, seconds: float = 6.0, crf: int = 23, preset: str = "veryfast",
                 gop: int | None = None) -> Path:
    """A large test clip (1080p60 by default) for decode timings: the scene rendered at a quarter of
    the size (a full-size render of every frame would take gigabytes), scaled up frame by frame
    while encoding with libx264 (all threads, ``preset``, a keyframe every ``gop`` frames, one a
    second by default, as dashcams do). Not byte-reproducible (threaded encoding); smoother than
    camera footage, so its decode cost is a lower bound for real 1080p video."""
    import av

    small = render_clip(kind, seed, width=max(16, width // 4) // 2 * 2, height=max(16, height // 4) // 2 * 2,
                        fps=fps, seconds=seconds)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop or fps
        stream.options = {"crf": str(crf), "preset": preset}
        for arr in small:
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(
                width=width, height=height, format="yuv420p", interpolation="BICUBIC")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
