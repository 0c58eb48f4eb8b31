"""The clips of a load run, decoded and sampled as the offline cells sample them, and turned into
requests for the server. A clip that cannot be decoded is left out with its reason (the others run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.inputs.requests import Request
from core.load.client import chat_body, frames_url
from core.load.scenarios import WorkItem


def prepare(clips: Sequence[Any], task, *, frames_for: Callable[[Any], Any], tokenizer,
            processor_kwargs: dict[str, Any], model: str, max_new_tokens: int,
            ignore_eos: bool = False) -> tuple[list[WorkItem], dict[str, str]]:
    """(work items in clip order, {clip id: why it was left out})."""
    from core.backends.base import candidate_token_ids

    items: list[WorkItem] = []
    errors: dict[str, str] = {}
    for clip in clips:
        try:
            frames = frames_for(clip)
            request = Request(clip=clip, frames=frames, messages=task.messages(clip), candidates=task.candidates(clip),
                              max_new_tokens=max_new_tokens)
            body = chat_body(request, processor_kwargs=processor_kwargs, model=model, ignore_eos=ignore_eos,
                             url=frames_url(frames))
            cands = candidate_token_ids(tokenizer, request.candidates)
        except Exception as exc:  # noqa: BLE001 - one broken clip fails alone, with its reason
            errors[clip.id] = f"{type(exc).__name__}: {exc}"
            continue
        items.append(WorkItem(clip=clip.id, body=body, truth=task.truth(clip), candidates=dict(cands)))
    return items, errors
