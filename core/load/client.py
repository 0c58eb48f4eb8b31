"""The smallest load client: the suite's own frames sent to a vLLM OpenAI-compatible server, streamed
back with the arrival time of every chunk.

Why not a well-kept load generator: ``vllm bench serve``, GuideLLM and AIPerf send their own datasets
or synthetic media, and none can send pre-sampled frames with their sampling metadata (which frames,
at what rate, of how long a clip) or hand back each answer with its log-probs for the comparison with
the same clip answered alone. Both are what make the server see what the offline cells see, so this
client does only that: build the request, send it at its scheduled time, time its chunks.

What the server sees. Each request carries the clip's sampled frames as a ``video/jpeg`` data URL
whose parts are PNG images (vLLM decodes each part with PIL, which reads the PNG: lossless, the same
pixels as the offline cells), the frames' metadata through ``media_io_kwargs`` (fps, frame indices,
total frames, duration; no resampling) and the family's processor arguments through
``mm_processor_kwargs`` (no resize), exactly as ``core.backends.vllm.prompt_inputs`` hands them to the in-process
engine. Every request's video carries a unique ``uuid``, so vLLM's multimodal caches (keyed by it)
never serve one request's video to another: each request costs what a first-seen video costs.
Greedy decoding; the top log-probs of every token come back as token ids
(``return_tokens_as_token_ids``) for the batch-drift comparison.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid as uuid_mod
from dataclasses import dataclass, field
from typing import Any

from core.base.errors import MissingDependency
from core.inputs.requests import Request

LOGPROBS = 20
"""Top log-probs asked per generated token: the candidates' first tokens are read from them."""


def frames_url(frames) -> str:
    """The frames as one ``data:video/jpeg`` URL of comma-separated base64 PNG images."""
    from PIL import Image

    parts = []
    for frame in frames.array:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
        parts.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return "data:video/jpeg;base64," + ",".join(parts)


def chat_body(request: Request, *, processor_kwargs: dict[str, Any], model: str, ignore_eos: bool = False,
              logprobs: int = LOGPROBS, url: str | None = None) -> dict[str, Any]:
    """The chat-completion request body for one clip (without the per-request uuid: see ``with_uuid``)."""
    meta = request.frames.metadata()
    content: list[dict[str, Any]] = []
    for part in request.messages[0]["content"]:
        if part.get("type") == "video":
            content.append({"type": "video_url", "video_url": {"url": url or frames_url(request.frames)}})
        else:
            content.append(dict(part))
    messages = [{"role": request.messages[0]["role"], "content": content}, *request.messages[1:]]
    return {
        "model": model, "messages": messages, "max_tokens": request.max_new_tokens, "temperature": 0.0,
        "ignore_eos": ignore_eos, "stream": True, "stream_options": {"include_usage": True},
        "logprobs": True, "top_logprobs": logprobs, "return_tokens_as_token_ids": True,
        # video_backend: naming a loader skips vLLM 0.26's lookup of one from the model's video processor,
        # which raises TypeError (HTTP 400 "unhashable type: 'dict'") for every video under transformers
        # >= 5.19, whose VIDEO_PROCESSOR_MAPPING_NAMES values are dicts (vllm/multimodal/video.py:93;
        # 0.32 reads the dict). The data URL's frames are decoded by the video/jpeg path, never by that
        # loader, and vLLM removes the key before the metadata is kept: same pixels, same metadata.
        "media_io_kwargs": {"video": {"num_frames": -1, "fps": meta["fps"], "frames_indices": meta["frames_indices"],
                                      "total_num_frames": meta["total_num_frames"], "duration": meta["duration"],
                                      "do_sample_frames": False, "video_backend": "opencv"}},
        "mm_processor_kwargs": dict(processor_kwargs),
    }


def with_uuid(body: dict[str, Any], tag: str) -> dict[str, Any]:
    """A copy of ``body`` whose video carries a fresh uuid (so no cache shares it)."""
    out = dict(body)
    msgs = []
    for m in body["messages"]:
        content = m["content"]
        if isinstance(content, list):
            content = [({**p, "uuid": f"{tag}-{uuid_mod.uuid4().hex}"} if p.get("type") == "video_url" else p)
                       for p in content]
        msgs.append({**m, "content": content})
    out["messages"] = msgs
    return out


@dataclass
class Outcome:
    """One request's fate: when it was due, sent, answered; the answer; or the error."""

    index: int
    clip: str
    scheduled: float
    """Seconds after the scenario's start at which the request was due."""
    sent: float = 0.0
    first_token: float | None = None
    end: float | None = None
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    """Per generated token: (token id, log-prob) of the top ``LOGPROBS``."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.end is not None

    @property
    def e2e_s(self) -> float | None:
        """From the request's due time to its last token (a client running late counts against the server:
        no coordinated omission)."""
        return None if self.end is None else self.end - self.scheduled

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.scheduled

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first."""
        n = len(self.token_ids)
        if self.first_token is None or self.end is None or n < 2:
            return None
        return (self.end - self.first_token) / (n - 1)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "clip": self.clip, "scheduled_s": self.scheduled, "sent_s": self.sent,
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "e2e_s": self.e2e_s, "answer": self.text,
                "token_ids": self.token_ids, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "error": self.error}


def _token_id(token: str) -> int | None:
    # return_tokens_as_token_ids: "token_id:123"
    if token.startswith("token_id:"):
        try:
            return int(token.split(":", 1)[1])
        except ValueError:
            return None
    return None


async def send(session, url: str, body: dict[str, Any], outcome: Outcome, *, t0: float, timeout_s: float) -> Outcome:
    """POST one streaming chat completion and fill ``outcome`` (times relative to ``t0``, perf_counter)."""
    import aiohttp

    outcome.sent = time.perf_counter() - t0
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                text = (await resp.text())[:500]
                outcome.error = f"HTTP {resp.status}: {text}"
                return outcome
            buffer = b""
            async for chunk in resp.content.iter_any():
                now = time.perf_counter() - t0
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue
                    _absorb(json.loads(data), outcome, now)
            outcome.end = time.perf_counter() - t0
    except TimeoutError:
        outcome.error = f"timed out after {timeout_s:.0f} s (no complete answer; --load-timeout sets the limit)"
    except aiohttp.ClientError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


def _absorb(event: dict[str, Any], outcome: Outcome, now: float) -> None:
    if event.get("error"):
        outcome.error = f"HTTP 200, error in the stream: {event['error']}"
        return
    usage = event.get("usage")
    if usage:
        outcome.prompt_tokens = usage.get("prompt_tokens")
        outcome.completion_tokens = usage.get("completion_tokens")
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        lp = (choice.get("logprobs") or {}).get("content") or []
        if (delta.get("content") or lp) and outcome.first_token is None:
            outcome.first_token = now
        outcome.text += delta.get("content") or ""
        for step in lp:
            tid = _token_id(step.get("token", ""))
            if tid is not None:
                outcome.token_ids.append(tid)
            outcome.top.append([(t, float(e["logprob"])) for e in step.get("top_logprobs") or []
                                if (t := _token_id(e.get("token", ""))) is not None])


def aiohttp_session(limit: int):
    try:
        import aiohttp
    except ImportError as exc:
        raise MissingDependency("aiohttp", "the load client", "pip install aiohttp (vLLM installs it)") from exc
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit or 0))
