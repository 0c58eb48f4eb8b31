"""Which field of the load client's request makes vLLM 0.26.0 answer HTTP 400 "unhashable type: 'dict'"
(seen on an H200 on 2026-12-07; vLLM 0.32 on CPU accepts the same requests). Starts one server for the
7B shape in bf16, prepares one fixture clip as the load client does, and sends the request with each
optional field removed in turn; prints the status and the start of each answer.

Run on the GPU machine (bundles unpacked, `source .ci/gpu/env.sh` first): python3 .ci/gpu/bisect_load_400.py
"""

import copy
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from core.inputs import dataset
from core.plan import device as devices
from core.plan import formats
from core.backends.vllm import VLLMBackend
from core.load.client import with_uuid
from core.load.server import SERVED_NAME, VLLMServer
from core.load.workload import prepare
from core.models import registry
from core.inputs.requests import EngineOptions
from core.cells.runner import FrameCache
from core.inputs.sampling import anchor
from core.plan.settings import build
from core.inputs.tasks import get_task

model = sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-vl-7b"
s = build(Path.cwd(), {})
backend = VLLMBackend(registry.resolve(model), formats.get_format("bf16"), devices.primary(), EngineOptions())
kwargs, _ = backend.server_kwargs()
task = get_task("anomaly")
clips = dataset.load(task.default_dataset)[:1]
cache = FrameCache()
items, errors = prepare(clips, task, frames_for=lambda c: cache.get(c, anchor(s.sampling(), c)), tokenizer=backend.tokenizer,
                        processor_kwargs=backend.family.processor_kwargs, model=SERVED_NAME, max_new_tokens=7)
assert items, errors
base = with_uuid(items[0].body, "bisect")
base["stream"] = False
base.pop("stream_options")


def without(*keys, video_uuid=True):
    body = copy.deepcopy(base)
    for k in keys:
        body.pop(k, None)
    if not video_uuid:
        for part in body["messages"][0]["content"]:
            part.pop("uuid", None)
    return body


variants = {
    "as sent": without(),
    "no uuid": without(video_uuid=False),
    "no media_io_kwargs": without("media_io_kwargs"),
    "no mm_processor_kwargs": without("mm_processor_kwargs"),
    "no logprobs fields": without("logprobs", "top_logprobs", "return_tokens_as_token_ids"),
    "no ignore_eos": without("ignore_eos"),
    "none of them": without("media_io_kwargs", "mm_processor_kwargs", "logprobs", "top_logprobs",
                            "return_tokens_as_token_ids", "ignore_eos", video_uuid=False),
}
log = Path(__import__("os").environ.get("OUT", "/tmp")) / "bisect-server.log"
with VLLMServer(kwargs, log=log) as server:
    for name, body in variants.items():
        req = urllib.request.Request(f"{server.url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                print(f"{name:28s} {r.status} {r.read().decode()[:160]}")
        except urllib.error.HTTPError as exc:
            print(f"{name:28s} {exc.code} {exc.read().decode()[:300]}")
