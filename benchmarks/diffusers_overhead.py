"""Overhead of mmeval's diffusers-image adapter over a bare diffusers loop, same work on both sides.

A randomly initialised pipeline is built from configs (no download) and saved with
``save_pretrained``: ``--shape sd15`` has Stable Diffusion 1.5's shapes (UNet 320/640/1280/1280
with cross-attention 768, CLIP ViT-L/14 text encoder, the 4-level KL autoencoder, PNDM, 512x512);
``--shape tiny`` is the ``tiny-sd`` test build (32x32). Both sides then render the same N prompts,
at the same batch size, steps and guidance, with the same per-sample seeds (one CPU generator per
sample, seeded with ``sample_seed``):

* bare: ``pipe(prompts, generator=[...], output_type="np")``, the images left as arrays;
* bare+png: the same, then each image rounded to uint8 and saved as PNG in memory, serially (what
  a user script that keeps its images does);
* mmeval: ``DiffusersImage.generate(requests)``: prompt extraction, seeds, the pipeline call, PNG
  encoding (threaded), sha256, Response objects.

images/s excludes loading and one warm-up batch; the sides alternate batch by batch, all
batches make a round, and each side's best of ``--rounds`` rounds counts. The overhead is mmeval's time over bare's. The
adapter's images are checked against bare's (max abs pixel difference, 0..255). Random weights
give noise-like images, the worst case for PNG compression: a real checkpoint's images compress
several times faster.

    .venv/bin/python benchmarks/diffusers_overhead.py --shape sd15 --device cuda --dtype float16 --batch-size 8 --steps 25 --n 64
    .venv/bin/python benchmarks/diffusers_overhead.py --shape tiny --device cpu --n 16 --batch-size 4 --steps 2   # CPU check
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmeval.models.base import sample_seed
from mmeval.models.diffusers_gen import DiffusersImage, to_uint8
from mmeval.models.tiny_diffusers import build_tiny_pipeline, clip_tokenizer
from mmeval.types import GenerationConfig, Message, Request, TextPart

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
THINGS = ["circle", "square", "triangle", "star", "cat on a sofa", "mountain lake", "city street at night", "bowl of fruit"]


def build_sd15(out: Path, dtype: torch.dtype, device: str) -> None:
    """Random weights in SD-1.5's shapes (runwayml/stable-diffusion-v1-5 configs), saved in ``dtype``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):  # random init of ~1.1B parameters is much faster on the GPU
        unet = UNet2DConditionModel(
            sample_size=64,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=2,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                projection_dim=768,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),  # a small trained vocabulary: ids stay below CLIP-L's 49408
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(dtype=dtype).save_pretrained(out)


def requests(n: int) -> list[Request]:
    out = []
    for i in range(n):
        text = f"a {COLOURS[i % len(COLOURS)]} {THINGS[(i // len(COLOURS)) % len(THINGS)]}, photo {i}"
        out.append(Request(f"p{i}", (Message("user", (TextPart(text),)),), GenerationConfig(seed=0), output_modality="image"))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def bare_batch(pipe: Any, batch: list[Request], steps: int, guidance: float, encode: bool) -> tuple[float, list[np.ndarray]]:
    """One batch through the pipeline directly; prompts and seeds are prepared before the clock starts."""
    texts = [r.messages[0].parts[0].text for r in batch]  # type: ignore[union-attr]
    seeds = [sample_seed(r) for r in batch]
    start = time.perf_counter()
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    images = list(pipe(texts, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np").images)
    if encode:
        for image in images:
            png(image)
    return time.perf_counter() - start, images


def mmeval_batch(model: DiffusersImage, batch: list[Request]) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    responses = model.generate(batch)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in responses), [r.error for r in responses if not r.ok][:3]
    return elapsed, [np.asarray(Image.open(io.BytesIO(r.artifacts[0].data or b""))) for r in responses]


def measure(
    pipe: Any, model: DiffusersImage, batches: list[list[Request]], steps: int, guidance: float, device: str
) -> tuple[dict[str, float], int]:
    """Seconds per side for all batches, the sides interleaved batch by batch (so a slow spell of
    a shared machine hits all three alike), and the largest pixel difference mmeval vs bare."""
    total = {"bare": 0.0, "bare+png": 0.0, "mmeval": 0.0}
    diff = 0
    for batch in batches:
        sync(device)
        elapsed, bare_images = bare_batch(pipe, batch, steps, guidance, encode=False)
        total["bare"] += elapsed
        total["bare+png"] += bare_batch(pipe, batch, steps, guidance, encode=True)[0]
        elapsed, ours = mmeval_batch(model, batch)
        total["mmeval"] += elapsed
        for a, b in zip(ours, bare_images, strict=True):
            diff = max(diff, int(np.abs(a.astype(np.int16) - to_uint8(b).astype(np.int16)).max()))
    return total, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=["sd15", "tiny"], default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None, help="default: float16 on CUDA, float32 on CPU")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: 25 for sd15, 2 for tiny)")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--n", type=int, default=32, help="images per side and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    dtype_name = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    steps = args.steps or (25 if args.shape == "sd15" else 2)
    from diffusers import StableDiffusionPipeline

    with tempfile.TemporaryDirectory(prefix="mmeval-diffusers-bench-") as tmp:
        ckpt = Path(tmp) / args.shape
        t0 = time.perf_counter()
        if args.shape == "sd15":
            build_sd15(ckpt, getattr(torch, dtype_name), args.device)
        else:
            build_tiny_pipeline("tiny-sd", ckpt)
        build_s = time.perf_counter() - t0
        model = DiffusersImage(
            pretrained=str(ckpt),
            device=args.device,
            dtype=dtype_name,
            num_inference_steps=str(steps),
            guidance_scale=str(args.guidance),
        )
        pipe = StableDiffusionPipeline.from_pretrained(ckpt, dtype=getattr(torch, dtype_name)).to(args.device)
        pipe.set_progress_bar_config(disable=True)
        reqs = requests(args.n)
        batches = [reqs[i : i + args.batch_size] for i in range(0, args.n, args.batch_size)]
        measure(pipe, model, [requests(args.batch_size)], steps, args.guidance, args.device)  # load, warm up
        rounds = [measure(pipe, model, batches, steps, args.guidance, args.device) for _ in range(args.rounds)]
    best = {side: min(r[0][side] for r in rounds) for side in rounds[0][0]}
    diff = max(r[1] for r in rounds)
    result = {
        "shape": args.shape,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor() or "cpu",
        "dtype": dtype_name,
        "batch_size": args.batch_size,
        "steps": steps,
        "n": args.n,
        "rounds": args.rounds,
        "build_s": round(build_s, 1),
        "images_per_s": {k: round(args.n / v, 3) for k, v in best.items()},
        "overhead_pct": round(100 * (best["mmeval"] - best["bare"]) / best["bare"], 2),
        "overhead_vs_bare_png_pct": round(100 * (best["mmeval"] - best["bare+png"]) / best["bare+png"], 2),
        "max_pixel_diff_mmeval_vs_bare": diff,
        "torch": torch.__version__,
    }
    ips = result["images_per_s"]
    print(f"{args.shape} on {result['device_name']} ({dtype_name}), batch {args.batch_size}, {steps} steps, n={args.n}:")
    print(f"  bare diffusers     {ips['bare']:8.3f} images/s")
    print(f"  bare + PNG         {ips['bare+png']:8.3f} images/s")
    print(f"  mmeval adapter     {ips['mmeval']:8.3f} images/s   overhead {result['overhead_pct']:+.2f}% vs bare")
    print(f"  max pixel difference mmeval vs bare: {diff}")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
