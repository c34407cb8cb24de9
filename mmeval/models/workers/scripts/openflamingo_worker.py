"""OpenFlamingo worker: runs in OpenFlamingo's own environment (open_clip, einops, its transformers pin).

Written against github.com/mlfoundations/open_flamingo at commit 655f693fbfa04cd6e9a987d960654624d48917cf
(2023-10-11). mmeval starts it with the repository as cwd and on PYTHONPATH, and the config
built by mmeval/models/workers/openflamingo.py as argv[1].

Loading follows the README and ``open_flamingo/eval/models/open_flamingo.py``:
``create_model_and_transforms(vision_encoder, vision_pretrained, lang_encoder, tokenizer,
cross_attn_every_n_layers)``, then ``torch.load(checkpoint)`` (a ``model_state_dict`` entry is
unwrapped and ``module.`` prefixes dropped, as the eval model does) into
``load_state_dict(strict=False)``. Because that is non-strict, the worker checks the result:
keys the model does not have, or a perceiver / gated cross-attention weight the checkpoint
does not set (a wrong ``cross_attn_every_n_layers`` causes both), stop the load.

Per request: the parts in order, an image as ``<image>``, an assistant turn closed with
``<|endofchunk|>``; images through the OpenCLIP transform into ``vision_x`` of shape
(1, images, 1, 3, H, W); ``tokenizer.padding_side = "left"``; ``model.generate(vision_x, lang_x,
attention_mask, max_new_tokens, num_beams, length_penalty, ...)``, which stops at
``<|endofchunk|>``; only the new tokens are decoded (``skip_special_tokens``), as the eval
model's ``get_outputs`` does.
"""

from __future__ import annotations

import time

from worker_loop import RequestError, seed_everything, serve, text_of, versions

IMAGE = "<image>"
END_OF_CHUNK = "<|endofchunk|>"
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def load(config: dict) -> tuple:
    import torch
    from open_flamingo import create_model_and_transforms

    model, image_processor, tokenizer = create_model_and_transforms(
        clip_vision_encoder_path=config.get("vision_encoder", "ViT-L-14"),
        clip_vision_encoder_pretrained=config.get("vision_pretrained", "openai"),
        lang_encoder_path=config["lang_encoder"],
        tokenizer_path=config.get("tokenizer") or config["lang_encoder"],
        cross_attn_every_n_layers=int(config.get("cross_attn_every_n_layers", 1)),
    )
    checkpoint = torch.load(config["checkpoint"], map_location="cpu")
    if "model_state_dict" in checkpoint:
        checkpoint = {k.replace("module.", ""): v for k, v in checkpoint["model_state_dict"].items()}
    check_load(model.load_state_dict(checkpoint, strict=False), config["checkpoint"])
    dtype = getattr(torch, DTYPES[config.get("precision", "fp32")])
    device = config.get("device", "cuda")
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer.padding_side = "left"
    info = {
        "model": "OpenFlamingo",
        "checkpoint": config["checkpoint"],
        "checkpoint_tensors": len(checkpoint),
        "lang_encoder": config["lang_encoder"],
        "vision_encoder": f"{config.get('vision_encoder', 'ViT-L-14')} ({config.get('vision_pretrained', 'openai')})",
        "cross_attn_every_n_layers": int(config.get("cross_attn_every_n_layers", 1)),
        "device": device,
        "precision": config.get("precision", "fp32"),
        "versions": versions("torch", "transformers", "open_clip_torch", "open_flamingo"),
    }

    def handle(request: dict) -> dict:
        return generate(model, image_processor, tokenizer, config, request, device, dtype)

    return handle, info


def check_load(result: object, path: str) -> None:
    unexpected = list(getattr(result, "unexpected_keys", []))
    untrained = [k for k in getattr(result, "missing_keys", []) if k.startswith("perceiver.") or "gated_cross_attn" in k]
    if unexpected or untrained:
        raise RuntimeError(
            f"the checkpoint {path} does not fit this model: {len(unexpected)} unknown keys (e.g. {unexpected[:3]}), "
            f"{len(untrained)} perceiver/cross-attention weights not set (e.g. {untrained[:3]}); "
            "check cross_attn_every_n_layers and lang_encoder against the checkpoint's model card"
        )


def build_prompt(messages: list) -> tuple:
    """OpenFlamingo's interleaved text and the image paths, in order."""
    text, images = "", []
    for m in messages:
        for part in m["parts"]:
            if part["type"] == "text":
                text += part["text"]
            elif part["type"] == "image":
                text += IMAGE
                images.append(part["path"])
            else:
                raise RequestError(f"OpenFlamingo does not take {part['type']} input")
        if m["role"] == "assistant":
            text += END_OF_CHUNK
        elif m["role"] == "system" and text_of(m):
            text += "\n"
    if not images:
        raise RequestError("OpenFlamingo needs at least one image in the prompt")
    return text, images


def generate(model: object, image_processor: object, tokenizer: object, config: dict, request: dict, device: str, dtype: object) -> dict:
    import torch
    from PIL import Image

    gen = request["generation"]
    seed_everything(gen["seed"])
    text, paths = build_prompt(request["messages"])
    pixels = []
    for path in paths:
        with Image.open(path) as img:
            pixels.append(image_processor(img.convert("RGB")))
    vision_x = torch.stack(pixels).unsqueeze(1).unsqueeze(0).to(device=device, dtype=dtype)  # (1, T, 1, C, H, W)
    lang = tokenizer([text], return_tensors="pt")
    input_ids = lang["input_ids"].to(device)
    kwargs = {
        "max_new_tokens": gen["max_new_tokens"],
        "num_beams": config.get("num_beams", 3),
        "length_penalty": config.get("length_penalty", 0.0),
    }
    if gen["temperature"] > 0:
        kwargs.update(do_sample=True, temperature=gen["temperature"], top_p=gen["top_p"])
    start = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(vision_x=vision_x, lang_x=input_ids, attention_mask=lang["attention_mask"].to(device), **kwargs)
    generate_s = time.perf_counter() - start
    new_tokens = output[0][input_ids.shape[1] :]
    answer = tokenizer.decode(new_tokens, skip_special_tokens=True)
    finish = "stop" if len(new_tokens) and int(new_tokens[-1]) == model.eoc_token_id else "length"
    return {
        "text": answer.strip(),
        "signal_tokens": None,
        "finish_reason": finish,
        "meta": {"prompt": text, "images": len(paths)},
        "timings": {"generate_s": round(generate_s, 6)},
    }


if __name__ == "__main__":
    raise SystemExit(serve(load))
