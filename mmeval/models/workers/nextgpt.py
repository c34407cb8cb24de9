"""NExT-GPT (any-to-any: text, image, audio, video in and out) through a worker process.

    mmeval run --model nextgpt --tasks coco_t2i_5k \
        --model-args python=~/envs/nextgpt/bin/python,repo=~/src/NExT-GPT

The worker (scripts/nextgpt_worker.py) drives the code that matches the released checkpoint
``7b_tiva_v0``: the repository's ``NExT-GPT-Lagacy/code`` folder (``code/`` in checkouts from
before the 2024 reorganisation; ``repo=`` may also point at that folder itself). It loads the
model as that folder's ``inference.py`` does (``load_config`` + ``NextGPTModel(**args)`` + the
delta checkpoint) and calls ``NextGPTModel.generate``. See docs/workers.md for the set-up.

Signal tokens (counted in the repository's ``config/base.yaml``; the worker reports the counts
it actually loaded): 4 image tokens ``[IMG0]..[IMG3]``, 8 audio tokens ``[AUD0]..[AUD7]``, 24
video tokens ``[VID0]..[VID23]``. The LLM emits them to trigger the output projector and a
generator (Stable Diffusion, AudioLDM, ZeroScope). Each response reports per modality whether
they were emitted (``meta["signal_tokens"]``); the text has them removed (the worker removes
them; this adapter removes any left over).

Model args besides python/repo/timeouts (all optional):

- ``ckpt``: the delta checkpoint folder holding ``pytorch_model.pt`` (default: the README's
  ``ckpt/delta_ckpt/nextgpt/7b_tiva_v0`` next to the code);
- ``pretrained_ckpt``: the folder with ``imagebind_ckpt/`` and ``vicuna_ckpt/`` (default:
  ``ckpt/pretrained_ckpt``), ``vicuna_version`` (default from the repo config, ``7b_v0``);
- ``image_diffusion``, ``audio_diffusion``, ``video_diffusion``: hub ids or local folders
  replacing the config's generators (for offline machines);
- ``device`` (``cuda``), ``dtype`` (``float16`` as in the repo's inference, or ``float32``, ``bfloat16``);
- generator settings with NExT-GPT's own names and its demo's defaults:
  ``guidance_scale_for_img`` 7.5, ``num_inference_steps_for_img`` 50, ``guidance_scale_for_vid``
  7.5, ``num_inference_steps_for_vid`` 50, ``num_frames`` 24, ``height`` 320, ``width`` 576,
  ``guidance_scale_for_aud`` 7.5, ``num_inference_steps_for_aud`` 50, ``audio_length_in_s`` 9;
- ``outputs``: ``requested`` (default: run only the generator of the request's output modality,
  the others would be wasted work) or ``all``;
- ``greedy_temperature`` (default 0.01): NExT-GPT's generate always samples, so a greedy
  request (temperature 0) samples at this temperature, seeded per request;
- ``video_fps`` (8, as the demo writes videos), ``audio_rate`` (16000, AudioLDM's rate).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from mmeval.models.base import ArchitectureCard, Capabilities, ModelArgsError
from mmeval.models.workers.adapter import COMMON_ARGS, WorkerModel

SIGNAL_TOKEN_COUNTS = {"image": ("IMG", 4), "audio": ("AUD", 8), "video": ("VID", 24)}
SIGNAL_TOKEN = re.compile(r"\s*\[(?:IMG|AUD|VID)\d{1,3}\]")
CODE_LAYOUTS = ("NExT-GPT-Lagacy/code", "code", ".")  # 2024 layout, 2023 layout, the folder itself
MODEL_FILE = "model/anyToImageVideoAudio.py"

FLOAT_SETTINGS = {
    "guidance_scale_for_img": 7.5,
    "guidance_scale_for_vid": 7.5,
    "guidance_scale_for_aud": 7.5,
    "audio_length_in_s": 9.0,
    "greedy_temperature": 0.01,
    "video_fps": 8.0,
}
INT_SETTINGS = {
    "num_inference_steps_for_img": 50,
    "num_inference_steps_for_vid": 50,
    "num_inference_steps_for_aud": 50,
    "num_frames": 24,
    "height": 320,
    "width": 576,
    "audio_rate": 16000,
}
PATH_ARGS = ("ckpt", "pretrained_ckpt")
TEXT_ARGS = ("vicuna_version", "image_diffusion", "audio_diffusion", "video_diffusion", "device", "dtype", "outputs")


def strip_signal_tokens(text: str) -> str:
    """Text without NExT-GPT's modality signal tokens (and the spaces before them)."""
    return re.sub(r"[ \t]{2,}", " ", SIGNAL_TOKEN.sub("", text)).strip()


class NextGPT(WorkerModel):
    """NExT-GPT 7b_tiva_v0 in its own environment (worker process; python=, repo=; see docs/workers.md)."""

    name: ClassVar[str] = "nextgpt"
    script: ClassVar[str] = "nextgpt_worker.py"
    worker_version: ClassVar[int] = 1
    prompt_protocol: ClassVar[str | None] = "nextgpt"
    capabilities: ClassVar[Capabilities] = Capabilities(
        input_modalities=frozenset({"text", "image", "audio", "video"}),
        output_modalities=frozenset({"text", "image", "audio", "video"}),
        batchable=True,
    )
    card = ArchitectureCard(
        modality_encoder="ImageBind (huge)",
        input_projector="linear",
        llm_backbone="Vicuna-7B (LoRA-tuned)",
        output_projector="transformer",
        modality_generator="Stable Diffusion (image), AudioLDM (audio), ZeroScope (video)",
        license="BSD-3-Clause (code); checkpoints under their own licences",
        open_weights=True,
    )
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS | set(FLOAT_SETTINGS) | set(INT_SETTINGS) | set(PATH_ARGS) | set(TEXT_ARGS)

    def locate_code(self, repo: Path) -> Path:
        for layout in CODE_LAYOUTS:
            code = (repo / layout).resolve()
            if (code / MODEL_FILE).is_file():
                return code
        raise ModelArgsError(
            f"nextgpt: repo={repo} does not look like a NExT-GPT checkout: none of "
            f"{', '.join(f'{layout}/{MODEL_FILE}' for layout in CODE_LAYOUTS)} exists. "
            "Clone https://github.com/NExT-GPT/NExT-GPT and pass its folder as repo=."
        )

    def build_config(self, args: dict[str, str]) -> dict[str, Any]:
        ckpt_root = self.code_dir.parent / "ckpt"
        ckpt = self.path_arg(
            args,
            "ckpt",
            ckpt_root / "delta_ckpt" / "nextgpt" / "7b_tiva_v0",
            kind="folder",
            hint="Download the NExT-GPT delta checkpoint (huggingface.co/ChocoWu/nextgpt_7b_tiva_v0) and pass its folder as ckpt=.",
        )
        assert ckpt is not None
        if not (ckpt / "pytorch_model.pt").is_file():
            raise ModelArgsError(
                f"nextgpt: the delta checkpoint folder {ckpt} has no pytorch_model.pt; set ckpt= to the folder that has it"
            )
        pretrained = self.path_arg(
            args,
            "pretrained_ckpt",
            ckpt_root / "pretrained_ckpt",
            kind="folder",
            hint="It holds imagebind_ckpt/ and vicuna_ckpt/ (see docs/workers.md); set pretrained_ckpt=.",
        )
        assert pretrained is not None
        vicuna = pretrained / "vicuna_ckpt" / args.get("vicuna_version", "7b_v0")
        if not (vicuna / "config.json").is_file():
            raise ModelArgsError(
                f"nextgpt: no Vicuna checkpoint at {vicuna} (config.json missing): prepare it as the repo's "
                "prepare_vicuna.md says, or set pretrained_ckpt= / vicuna_version="
            )
        config: dict[str, Any] = {"ckpt": str(ckpt), "pretrained_ckpt": str(pretrained)}
        config |= {k: self.float_arg(args, k, v) for k, v in FLOAT_SETTINGS.items()}
        config |= {k: self.int_arg(args, k, v, minimum=1) for k, v in INT_SETTINGS.items()}
        if config["greedy_temperature"] <= 0 or config["video_fps"] <= 0:
            raise ModelArgsError("nextgpt: greedy_temperature and video_fps must be > 0")
        for key in ("vicuna_version", "image_diffusion", "audio_diffusion", "video_diffusion"):
            if args.get(key):
                config[key] = args[key]
        config["device"] = args.get("device", "cuda")
        config["dtype"] = self.choice_arg(args, "dtype", ("float16", "bfloat16", "float32"), "float16")
        config["outputs"] = self.choice_arg(args, "outputs", ("requested", "all"), "requested")
        return config

    def clean_text(self, text: str) -> str:
        return strip_signal_tokens(text)
