"""NExT-GPT worker: runs in NExT-GPT's own environment (Python 3.8, torch 1.13, transformers 4.29).

Written against github.com/NExT-GPT/NExT-GPT at commit 60d618b067ee4cb0d70e7075ae79852780b34fc2
(2025-05-13), folder ``NExT-GPT-Lagacy/code`` (the code of the released ``7b_tiva_v0``
checkpoint; ``code/`` before 2024). mmeval starts it with that folder as cwd and on PYTHONPATH,
and the model JSON config (see mmeval/models/workers/nextgpt.py) as argv[1].

Loading follows the folder's ``inference.py``: ``args.update(load_config(args))`` for stage 3,
``NextGPTModel(**args)``, ``load_state_dict(torch.load(<ckpt>/pytorch_model.pt), strict=False)``,
then eval mode on the device in the dtype. Unlike the demo it refuses a delta checkpoint that
does not fit (unexpected keys) or leaves trained weights (input/output projectors, LoRA) at
their random initialisation.

Each request becomes one ``NextGPTModel.generate(inputs)`` call with the demo's prompt format
(``### Human: <Image>path</Image>  question``; earlier turns as ``\\n### Assistant: answer\\n###``),
its stop word ``###`` (token 835), and the generator settings from the config. One deviation:
several media tags are separated by two spaces, not one, because NExT-GPT's prompt split
(``re.split(r' <|> ', ...)``) reads a second tag joined with one space as text. Only the
generator of the requested output modality runs (``max_num_imgs`` / ``_vids`` / ``_auds`` = 1
for it, 0 for the others) unless the config says ``outputs: all``.

``generate`` returns a list: a plain caption string when no signal token was produced,
otherwise ``{"img": [caption + " [IMG0] ... [IMG3]", [PIL images], ...]}``, ``{"vid": [caption,
frames]}`` (frames: (H, W, 3) uint8 arrays) and ``{"aud": [caption, samples]}`` (a float array
at 16 kHz). Images are saved as PNG, audio as WAV, videos as APNG.

The response text is the longest caption with signal tokens and the ``###`` stop removed
(each modality's caption is the text before its first signal token, so the longest one
contains the others; text NExT-GPT produced after a signal token is not returned by its
``generate``). ``signal_tokens[m]`` is true when the model emitted m's first signal token
(``[IMG0]``, ``[AUD0]``, ``[VID0]``): its generator ran or the token is in the returned text.
A modality whose tokens come after another modality's are only seen with ``outputs: all``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time

from worker_loop import RequestError, seed_everything, serve, text_of, versions
from worker_media import save_apng, save_png, save_wav

MODALITY_OF = {"img": "image", "aud": "audio", "vid": "video"}
TAG = {"image": "Image", "audio": "Audio", "video": "Video"}  # prompt tags, in the demo's order
SIGNAL = {"image": ("IMG", "num_gen_img_tokens"), "audio": ("AUD", "num_gen_audio_tokens"), "video": ("VID", "num_gen_video_tokens")}
SIGNAL_TOKEN = re.compile(r"\s*\[(?:IMG|AUD|VID)\d+\]")
STOP = "###"
STOP_IDS = [[835]]  # '###' in the LLaMA tokenizer, as the demo and inference.py pass it
SAFE_PATH = re.compile(r"^[^\s<>]+$")  # NExT-GPT splits the prompt on ' <' and '> '
DTYPES = ("float16", "bfloat16", "float32")


def build_prompt(messages: list, link_dir: str) -> tuple:
    """The demo's prompt text for a conversation, and the media paths by modality."""
    system = "\n".join(text_of(m) for m in messages if m["role"] == "system").strip()
    turns: list = []
    paths: dict = {"image": [], "audio": [], "video": []}
    for m in messages:
        if m["role"] == "user":
            media = [(p["type"], safe_path(p["path"], link_dir)) for p in m["parts"] if p["type"] != "text"]
            turns.append({"q": text_of(m), "media": media, "a": None})
            for kind, path in media:
                paths[kind].append(path)
        elif m["role"] == "assistant":
            if not turns or turns[-1]["a"] is not None:
                raise RequestError("an assistant message must follow a user message")
            turns[-1]["a"] = text_of(m)
    if not turns or turns[-1]["a"] is not None:
        raise RequestError("the conversation must end with a user message")
    if system:
        turns[0]["q"] = f"{system}\n{turns[0]['q']}"

    def human(turn: dict) -> str:
        tags = [f"<{TAG[kind]}>{path}</{TAG[kind]}>" for modality in TAG for kind, path in turn["media"] if kind == modality]
        # The demo joins tags with one space, which NExT-GPT's split (r' <|> ') cannot separate:
        # a second tag would be read as text. Two spaces keep every tag parseable; with one
        # medium (or none) the prompt is exactly the demo's.
        return "".join(f"{tag}  " for tag in tags) + turn["q"] if tags else f" {turn['q']}"

    prompt = ""
    for i, turn in enumerate(turns[:-1]):
        prompt += ("### Human: " if i == 0 else " Human: ") + f"{human(turn)}\n### Assistant: {turn['a']}\n###"
    prompt += ("### Human: " if len(turns) == 1 else " Human: ") + human(turns[-1])
    return prompt, paths


def safe_path(path: str, link_dir: str) -> str:
    """A path NExT-GPT's prompt parser can carry: a symlink when it has spaces or angle brackets."""
    if SAFE_PATH.match(path):
        return path
    link = os.path.join(link_dir, hashlib.sha256(path.encode()).hexdigest()[:16] + os.path.splitext(path)[1])
    if not os.path.lexists(link):
        os.symlink(path, link)
    return link


def clean(text: str) -> str:
    text = SIGNAL_TOKEN.sub("", text).split(STOP)[0]
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def load(config: dict) -> tuple:
    import torch
    from config import load_config  # NExT-GPT's code/config package
    from model.anyToImageVideoAudio import NextGPTModel

    if config.get("dtype", "float16") not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}")
    ckpt = config["ckpt"]
    args = {"model": "nextgpt", "nextgpt_ckpt_path": ckpt, "max_length": 128, "stage": 3, "root_dir": "../", "mode": "validate"}
    args.update(load_config(args))
    args["pretrained_ckpt_path"] = config["pretrained_ckpt"]
    for key in ("vicuna_version", "image_diffusion", "audio_diffusion", "video_diffusion"):
        if config.get(key):
            args[key] = config[key]
    model = NextGPTModel(**args)
    delta_path = os.path.join(ckpt, "pytorch_model.pt")
    delta = torch.load(delta_path, map_location="cpu")
    check_delta(model.load_state_dict(delta, strict=False), delta_path)
    dtype = getattr(torch, config.get("dtype", "float16"))
    model = model.eval().to(device=config.get("device", "cuda"), dtype=dtype)
    link_dir = tempfile.mkdtemp(prefix="nextgpt-links-")
    counts = {m: int(model.args[key]) for m, (_, key) in SIGNAL.items()}
    info = {
        "model": "NExT-GPT",
        "code": os.getcwd(),
        "ckpt": ckpt,
        "delta_tensors": len(delta),
        "pretrained_ckpt": args["pretrained_ckpt_path"],
        "vicuna_version": args.get("vicuna_version"),
        "imagebind_version": args.get("imagebind_version"),
        "generators": {"image": args.get("image_diffusion"), "audio": args.get("audio_diffusion"), "video": args.get("video_diffusion")},
        "signal_tokens": counts,
        "device": config.get("device", "cuda"),
        "dtype": config.get("dtype", "float16"),
        "versions": versions("torch", "transformers", "diffusers", "peft"),
    }

    def handle(request: dict) -> dict:
        return generate(model, config, request, link_dir)

    return handle, info


def check_delta(result: object, path: str) -> None:
    unexpected = list(getattr(result, "unexpected_keys", []))
    if unexpected:
        raise RuntimeError(
            f"the delta checkpoint {path} does not fit this code: {len(unexpected)} keys the model lacks, e.g. {unexpected[:4]}"
        )
    trained = [k for k in getattr(result, "missing_keys", []) if k.startswith(("llama_proj.", "gen_text_hidden_fcs")) or "lora_" in k]
    if trained:
        raise RuntimeError(f"the delta checkpoint {path} lacks {len(trained)} trained weights (they would stay random), e.g. {trained[:4]}")


def generate(model: object, config: dict, request: dict, link_dir: str) -> dict:
    import torch

    gen = request["generation"]
    seed_everything(gen["seed"])
    prompt, paths = build_prompt(request["messages"], link_dir)
    wanted = request["output_modality"]

    def limit(modality: str) -> int:
        return 1 if config.get("outputs") == "all" or wanted == modality else 0

    temperature = gen["temperature"] if gen["temperature"] > 0 else config["greedy_temperature"]
    inputs = {
        "prompt": prompt,
        "image_paths": paths["image"],
        "audio_paths": paths["audio"],
        "video_paths": paths["video"],
        "thermal_paths": [],
        "top_p": gen["top_p"],
        "temperature": temperature,
        "max_tgt_len": gen["max_new_tokens"],
        "modality_embeds": None,
        "filter_value": -float("inf"),
        "min_word_tokens": 10,
        "gen_scale_factor": 4.0,
        "stops_id": STOP_IDS,
        "ENCOUNTERS": 1,
        "load_sd": True,
        "generator": None,
        "max_num_imgs": limit("image"),
        "guidance_scale_for_img": config["guidance_scale_for_img"],
        "num_inference_steps_for_img": config["num_inference_steps_for_img"],
        "max_num_vids": limit("video"),
        "guidance_scale_for_vid": config["guidance_scale_for_vid"],
        "num_inference_steps_for_vid": config["num_inference_steps_for_vid"],
        "height": config["height"],
        "width": config["width"],
        "num_frames": config["num_frames"],
        "max_num_auds": limit("audio"),
        "guidance_scale_for_aud": config["guidance_scale_for_aud"],
        "num_inference_steps_for_aud": config["num_inference_steps_for_aud"],
        "audio_length_in_s": config["audio_length_in_s"],
    }
    start = time.perf_counter()
    with torch.no_grad():
        outputs = model.generate(inputs)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    result = collect(outputs, request["output_dir"], config)
    result["timings"] = {"generate_s": round(generate_s, 6), "save_s": round(time.perf_counter() - start, 6)}
    result["meta"]["temperature_used"] = temperature
    return result


def collect(outputs: list, out_dir: str, config: dict) -> dict:
    """NExT-GPT's output list -> text, saved media and the signal-token report."""
    raw: list = []
    captions: list = []
    media: list = []
    generated = {"image": False, "audio": False, "video": False}
    for item in outputs:
        if isinstance(item, str):
            raw.append(item)
            captions.append(clean(item))
            continue
        for key, values in item.items():
            modality = MODALITY_OF[key]
            generated[modality] = True
            segments = []
            for value in values:
                if isinstance(value, str):
                    raw.append(value)
                    segments.append(clean(value))
                else:
                    media.extend(save(modality, value, out_dir, len(media), config))
            captions.append(" ".join(s for s in segments if s))
    signal = {m: generated[m] or any(f"[{SIGNAL[m][0]}0]" in r for r in raw) for m in generated}
    text = max(captions, key=len) if captions else ""
    return {"text": text, "media": media, "signal_tokens": signal, "meta": {"raw_text": raw}}


def save(modality: str, value: object, out_dir: str, index: int, config: dict) -> list:
    if modality == "image":  # a list of PIL images (one per generation)
        images = value if isinstance(value, (list, tuple)) else [value]
        return [save_png(img, os.path.join(out_dir, f"image-{index + i}.png")) for i, img in enumerate(images)]
    if modality == "video":  # a list of (H, W, 3) uint8 frames; newer diffusers add a batch axis
        import numpy as np

        frames = np.asarray(value)
        if frames.ndim == 5:
            frames = frames[0]
        return [save_apng(frames, config["video_fps"], os.path.join(out_dir, f"video-{index}.png"))]
    return [save_wav(value, config["audio_rate"], os.path.join(out_dir, f"audio-{index}.wav"))]


if __name__ == "__main__":
    raise SystemExit(serve(load))
