"""OpenFlamingo (interleaved images and text -> text) through a worker process.

    mmeval run --model openflamingo --tasks coco_karpathy_test --model-args \
        python=$ENVS/of/bin/python,repo=$SRC/open_flamingo,checkpoint=$CKPT/checkpoint.pt,lang_encoder=$LM,cross_attn_every_n_layers=1

The worker (scripts/openflamingo_worker.py) builds the model with
``open_flamingo.create_model_and_transforms``, loads the checkpoint as the repository's
evaluation model does, and calls ``Flamingo.generate(vision_x, lang_x, attention_mask, ...)``.
The prompt is the conversation's parts in order, each image as ``<image>`` and every
assistant turn closed by ``<|endofchunk|>`` (OpenFlamingo's few-shot format); tasks may add
an ``openflamingo`` prompt variant such as ``<image>Question:{q} Short answer:``.

Model args besides python/repo/timeouts:

- ``checkpoint`` (required): ``checkpoint.pt`` of a released model;
- ``lang_encoder`` (required): the language model, a local folder or hub id, and
  ``tokenizer`` (default: the same);
- ``cross_attn_every_n_layers`` (default 1): must match the checkpoint (3B: 1, 4B: 2, 9B: 4);
  a mismatch is caught when the checkpoint loads;
- ``vision_encoder`` (``ViT-L-14``), ``vision_pretrained`` (``openai``, or a local weights file);
- ``device`` (``cuda``), ``precision`` (``fp32``, ``bf16``, ``fp16``);
- ``num_beams`` (3) and ``length_penalty`` (0.0): OpenFlamingo's evaluation defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from mmeval.models.base import ArchitectureCard, Capabilities, ModelArgsError
from mmeval.models.workers.adapter import COMMON_ARGS, WorkerModel
from mmeval.types import Request


class OpenFlamingo(WorkerModel):
    """OpenFlamingo in its own environment (worker process; python=, repo=, checkpoint=, lang_encoder=)."""

    name: ClassVar[str] = "openflamingo"
    script: ClassVar[str] = "openflamingo_worker.py"
    worker_version: ClassVar[int] = 1
    prompt_protocol: ClassVar[str | None] = "openflamingo"
    capabilities: ClassVar[Capabilities] = Capabilities(
        input_modalities=frozenset({"text", "image"}), output_modalities=frozenset({"text"}), batchable=True
    )
    card = ArchitectureCard(  # an instance names its own language model
        modality_encoder="CLIP ViT-L/14 (OpenCLIP)",
        input_projector="resampler",
        llm_backbone="MPT-1B / RedPajama-3B / MPT-7B (per checkpoint)",
        open_weights=True,
    )
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS | {
        "checkpoint",
        "lang_encoder",
        "tokenizer",
        "cross_attn_every_n_layers",
        "vision_encoder",
        "vision_pretrained",
        "device",
        "precision",
        "num_beams",
        "length_penalty",
    }

    def build_config(self, args: dict[str, str]) -> dict[str, Any]:
        for key in ("checkpoint", "lang_encoder"):
            if not args.get(key):
                raise ModelArgsError(f"openflamingo: model arg {key}= is required (see docs/workers.md)")
        checkpoint = self.path_arg(args, "checkpoint")
        config: dict[str, Any] = {"checkpoint": str(checkpoint)}
        for key, default in (("lang_encoder", None), ("tokenizer", args["lang_encoder"]), ("vision_pretrained", "openai")):
            value = args.get(key, default)
            config[key] = self._local_or_id(key, value)
        config["vision_encoder"] = args.get("vision_encoder", "ViT-L-14")
        config["cross_attn_every_n_layers"] = self.int_arg(args, "cross_attn_every_n_layers", 1, minimum=1)
        config["device"] = args.get("device", "cuda")
        config["precision"] = self.choice_arg(args, "precision", ("fp32", "bf16", "fp16"), "fp32")
        config["num_beams"] = self.int_arg(args, "num_beams", 3, minimum=1)
        config["length_penalty"] = self.float_arg(args, "length_penalty", 0.0, minimum=-100.0)
        self.card = ArchitectureCard(
            modality_encoder=f"CLIP {config['vision_encoder']} ({config['vision_pretrained']}, OpenCLIP)",
            input_projector="resampler",
            llm_backbone=Path(config["lang_encoder"]).name,
            license="MIT (code); checkpoints under their language model's licence",
            open_weights=True,
        )
        return config

    @staticmethod
    def _local_or_id(key: str, value: str) -> str:
        """A hub id or tag stays as is; anything path-like must exist (made absolute)."""
        expanded = os.path.expanduser(value)
        if value.startswith((".", "/", "~")) or os.path.exists(expanded):
            if not os.path.exists(expanded):
                raise ModelArgsError(f"openflamingo: {key}={value} does not exist")
            return os.path.abspath(expanded)
        return value

    def refuse(self, request: Request) -> str | None:
        return None if request.media("image") else "OpenFlamingo needs at least one image in the prompt"
