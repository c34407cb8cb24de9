"""Prompt building and batched decoding shared by the transformers adapters.

One request's answer is cut the same way everywhere: at the first end-of-sequence (or pad)
id, decoded without special tokens, then at the earliest stop string; ``finish_reason`` is
"length" only when the token budget ran out. torch is imported lazily.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from mmeval.types import GenerationConfig, MediaError, MediaPart, Request, Response, TextPart

# (text, finish reason, output tokens) of one generated row
Decoded = tuple[str, str, int]

# The error of a request whose prompt tokenized to nothing. Generating anyway would answer
# from padding alone (or crash the whole batch on a zero-width input), and the answer would
# be scored as if the model had seen the question. An empty *answer*, by contrast, is a
# valid (wrong) answer: the model saw the prompt and chose to say nothing.
EMPTY_PROMPT = (
    "empty prompt: the tokenizer returned no tokens for this request (not even a start token), so there is nothing to "
    "generate from; check the prompt text, the tokenizer and the chat template"
)


class EmptyPromptError(ValueError):
    """A batch row with no prompt token, where the caller cannot fail that row alone."""


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; True if one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


def chat_conversation(
    request: Request, owner: str, modality: str, load: Callable[[MediaPart], Any], *, skip_empty: bool = False
) -> tuple[list[dict[str, Any]], list[Any]]:
    """A request as chat-template messages (``{"type": modality}`` placeholders in prompt order)
    and its media, decoded by ``load``. Any other media is a MediaError (it fails the request
    only); ``skip_empty`` drops messages left without content."""
    conversation: list[dict[str, Any]] = []
    media: list[Any] = []
    for message in request.messages:
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif part.modality == modality:
                media.append(load(part))
                content.append({"type": modality})
            else:
                raise MediaError(f"{owner} cannot take {part.modality} input")
        if content or not skip_empty:
            conversation.append({"role": message.role, "content": content})
    return conversation, media


def checkpoint_eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The generation config's EOS ids (the tokenizer's EOS where the config sets none)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Ids that end a generated row: the generation config's EOS ids and pad id."""
    pad = model.generation_config.pad_token_id
    return checkpoint_eos_ids(model, tokenizer) | ({pad} if pad is not None else set())


def sampling_kwargs(gen: GenerationConfig) -> dict[str, Any]:
    """generate() kwargs for a request's decoding settings; seeds torch for sampling."""
    import torch

    kwargs: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "do_sample": not gen.greedy}
    if not gen.greedy:
        kwargs.update(temperature=gen.temperature, top_p=gen.top_p)
        torch.manual_seed(gen.seed)
    return kwargs


def generation_kwargs(gen: GenerationConfig, tokenizer: Any, **fixed: Any) -> dict[str, Any]:
    """``sampling_kwargs`` plus the adapter's ``fixed`` ones, plus the stop strings."""
    kwargs = {**sampling_kwargs(gen), **fixed}
    stops = [s for s in gen.stop if s]
    if stops:
        # Stop early once every row has hit a stop string; the cut itself happens in decode_rows.
        kwargs.update(stop_strings=stops, tokenizer=tokenizer)
    return kwargs


def timed_generate(model: Any, inputs: Any, kwargs: dict[str, Any]) -> tuple[Any, float]:
    """``model.generate(**inputs, **kwargs)`` without autograd; (output ids, wall seconds)."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, **kwargs)
    return out, time.perf_counter() - start


def decode_rows(
    rows: Sequence[Sequence[int]],
    decode: Callable[[list[int]], str],
    stop_ids: set[int],
    gen: GenerationConfig,
    max_new_tokens: int | None = None,
) -> list[Decoded]:
    """(text, finish reason, output tokens) per generated row: cut at the first stop id, decoded,
    cut at the earliest stop string. ``max_new_tokens``: the limit generate ran with, when not
    the request's."""
    limit = gen.max_new_tokens if max_new_tokens is None else max_new_tokens
    out = []
    for row in rows:
        n = next((i for i, tok in enumerate(row) if tok in stop_ids), len(row))
        text, stopped = truncate_at_stop(decode(list(row[:n])).strip(), [s for s in gen.stop if s])
        hit_eos = n < len(row)
        finish = "stop" if stopped or hit_eos or n < limit else "length"
        out.append((text.strip(), finish, n + int(hit_eos)))
    return out


def decode_with(tokenizer: Any) -> Callable[[list[int]], str]:
    return partial(tokenizer.decode, skip_special_tokens=True)


def text_responses(
    items: Sequence[tuple[Request, Any]],
    decoded: Sequence[Decoded],
    elapsed: float,
    meta: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Response]:
    """Responses by request id for one batched call; each request is charged an equal share of
    its wall time. ``meta`` adds per-item entries (e.g. audio handling) to ``output_tokens``."""
    share = elapsed / len(items)
    return {
        req.id: Response(
            id=req.id,
            text=text,
            finish_reason=finish,
            timings={"generate_s": share},
            meta={"output_tokens": n, **(meta(item) if meta else {})},
        )
        for (req, item), (text, finish, n) in zip(items, decoded, strict=True)
    }


def empty_rows(inputs: Any) -> list[int]:
    """Rows of a batched model input that hold no prompt token: all of them when the batch is
    zero tokens wide, else those its attention mask leaves empty (padding only)."""
    ids = inputs["input_ids"]
    if ids.shape[-1] == 0:
        return list(range(ids.shape[0]))
    mask = inputs.get("attention_mask")  # a dict or a BatchFeature
    if mask is None:
        return []
    return [i for i, n in enumerate(mask.sum(dim=-1).tolist()) if n == 0]


def left_pad(encodings: Sequence[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors, left-padded: every row ends where generation starts."""
    import torch

    width = max(len(e) for e in encodings)
    ids = torch.full((len(encodings), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encodings), width), dtype=torch.long)
    for i, e in enumerate(encodings):
        if e:
            ids[i, width - len(e) :] = torch.tensor(e, dtype=torch.long)
            mask[i, width - len(e) :] = 1
    return ids, mask


def generate_causal(
    model: Any,
    tokenizer: Any,
    stop_ids: set[int],
    gen: GenerationConfig,
    encodings: Sequence[list[int]],
    extra: dict[str, Any] | None = None,
) -> tuple[list[Decoded], float]:
    """One left-padded batched ``generate`` call on a decoder-only LM (optionally with extra
    model inputs, e.g. audio features). Returns per-row (text, finish reason, output tokens)
    and the wall time. An empty encoding is an EmptyPromptError for the whole call: the
    caller's runner retries the batch one request at a time, so only that request fails."""
    empty = [i for i, e in enumerate(encodings) if not e]
    if empty:
        rows = f"row{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))}"
        raise EmptyPromptError(f"{EMPTY_PROMPT} ({rows} of a batch of {len(encodings)})")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stop_ids)
    input_ids, attention_mask = left_pad(encodings, pad_id)
    kwargs = generation_kwargs(gen, tokenizer)
    device = model.device
    inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), **(extra or {})}
    out, elapsed = timed_generate(model, inputs, kwargs)
    rows = out[:, input_ids.shape[1] :].tolist()
    return decode_rows(rows, decode_with(tokenizer), stop_ids, gen), elapsed
