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
    length: int = 34
    width: int = 18
    stopped_at: int | None = None


def _lanes(w: int) -> tuple[int, int, list[int]]:
    road_l, road_r = int(w * 0.25), int(w * 0.75)
    n = 4
    lane_w = (road_r - road_l) / n
    centers = [int(road_l + lane_w * (i + 0.5)) for i in range(n)]
    return road_l, road_r, centers


def _lane_direction(lane: int) -> int:
    return 1 if lane < 2 else -1  # left two lanes drive down, right two drive up


def _background(w: int, h: int, t: int, rng_offset: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _GRASS
    road_l, road_r, _ = _lanes(w)
    img[:, road_l:road_r] = _ROAD
    lane_w = (road_r - road_l) / 4
    for i in range(1, 4):
        x = int(road_l + lane_w * i)
        if i == 2:  # solid centre line
            img[:, x - 2:x + 1] = (230, 200, 60)
            continue
        for y0 in range(-40 + (rng_offset % 40), h, 40):
            img[max(0, y0):max(0, y0 + 20), x - 1:x + 1] = _MARK
    img[:, road_l:road_l + 2] = _MARK
    img[:, road_r - 2:road_r] = _MARK
    return img


def _rect(img: np.ndarray, cx: float, cy: float, w: int, h: int, color) -> None:
    x0, x1 = int(round(cx - w / 2)), int(round(cx + w / 2))
    y0, y1 = int(round(cy - h / 2)), int(round(cy + h / 2))
    H, W = img.shape[:2]
    x0, x1, y0, y1 = max(0, x0), min(W, x1), max(0, y0), min(H, y1)
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1] = color


def _draw_car(img: np.ndarray, x: float, car: _Car) -> None:
    _rect(img, x, car.y, car.width, car.length, car.color)
    # windscreen at the front, so direction of travel is visible in a single frame
    front = car.y + np.sign(car.speed or 1) * car.length * 0.25
    _rect(img, x, front, car.width - 6, 6, (150, 200, 230))


def render_clip(kind: str, seed: int, *, width: int = WIDTH, height: int = HEIGHT,
                fps: int = FPS, seconds: float = SECONDS) -> np.ndarray:
    """Render a clip as uint8 frames (T, H, W, 3). Deterministic in (kind, seed, size)."""
    label_of(kind)
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    n_frames = int(round(fps * seconds))
    _, _, centers = _lanes(width)
    cars: list[_Car] = []
    for lane in range(4):
        for _ in range(int(rng.integers(1, 3))):
            d = _lane_direction(lane)
            cars.append(_Car(lane=lane, y=float(rng.uniform(0, height)),
                             speed=d * float(rng.uniform(2.0, 4.0)),
                             color=_CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))]))
    event_start = int(rng.integers(int(n_frames * 0.1), int(n_frames * 0.4)))
    special: dict = {}
    if kind == "wrong_way":
        lane = int(rng.integers(4))
        special["car"] = _Car(lane=lane, y=height + 20.0 if _lane_direction(lane) > 0 else -20.0,
                              speed=-_lane_direction(lane) * float(rng.uniform(3.0, 4.5)),
                              color=(250, 120, 20))
    elif kind == "collision":
        lane = int(rng.integers(2))  # two cars in one downward lane: the rear one is faster
        special["lead"] = _Car(lane=lane, y=float(rng.uniform(100, 140)), speed=1.5, color=(40, 80, 200))
        special["rear"] = _Car(lane=lane, y=special["lead"].y - 110, speed=5.0, color=(200, 40, 40))
    elif kind == "pedestrian":
        special["ped_y"] = float(rng.uniform(height * 0.3, height * 0.7))
        special["ped_dir"] = 1 if rng.random() < 0.5 else -1
    elif kind == "object":
        special["obj_lane"] = int(rng.integers(4))
        special["obj_y"] = float(rng.uniform(height * 0.3, height * 0.7))
        special["obj_color"] = (140, 90, 40) if rng.random() < 0.5 else (180, 150, 90)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    scroll = int(rng.integers(40))
    for t in range(n_frames):
        img = _background(width, height, t, scroll + 3 * t)
        for car in cars:
            y = (car.y + car.speed * t) % (height + 80) - 40
            if kind == "object" and car.lane == special["obj_lane"]:
                continue  # the blocked lane is empty in front of the object
            _draw_car(img, centers[car.lane], _Car(car.lane, y, car.speed, car.color))
        if kind == "wrong_way" and t >= event_start:
            c = special["car"]
            y = c.y + c.speed * (t - event_start)
            _draw_car(img, centers[c.lane], _Car(c.lane, y, c.speed, c.color))
        elif kind == "collision":
            lead, rear = special["lead"], special["rear"]
            ly = lead.y + lead.speed * t
            ry = rear.y + rear.speed * t
            if ry + rear.length >= ly:  # impact: both stop, debris
                if "hit" not in special:
                    special["hit"] = (ly, ry)
                ly, ry = special["hit"]
                _rect(img, centers[lead.lane] + 14, (ly + ry) / 2 + 17, 10, 10, (250, 250, 250))
                _rect(img, centers[lead.lane] - 14, (ly + ry) / 2 + 12, 8, 8, (250, 160, 0))
            x = centers[lead.lane]
            _draw_car(img, x, _Car(lead.lane, ly, lead.speed, lead.color))
            _draw_car(img, x + (3 if "hit" in special else 0), _Car(rear.lane, ry, rear.speed, rear.color))
        elif kind == "pedestrian" and t >= event_start:
            road_l, road_r, _ = _lanes(width)
            span = road_r - road_l + 40
            progress = min(1.0, (t - event_start) / max(1, n_frames - event_start))
            x = road_l - 20 + span * progress if special["ped_dir"] > 0 else road_r + 20 - span * progress
            _rect(img, x, special["ped_y"], 8, 8, (250, 210, 170))        # head
            _rect(img, x, special["ped_y"] + 9, 10, 12, (220, 30, 160))   # body
        elif kind == "object":
            _rect(img, centers[special["obj_lane"]], special["obj_y"], 16, 12, special["obj_color"])
        frames[t] = img
    noise = np.random.default_rng([seed, 99]).integers(-6, 7, size=frames.shape[1:], dtype=np.int16)
    return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)


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
                              "x264-params": "threads=1:sliced-threads=0"}
        stream.codec_context.flags |= getattr(stream.codec_context.flags.__class__, "BITEXACT", 0)
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
