"""MiniGPT-4 (image + text -> text) through a worker process in MiniGPT-4's own environment.

    mmeval run --model minigpt4 --tasks vqav2_val --model-args \
        python=$ENVS/minigptv/bin/python,repo=$SRC/MiniGPT-4,ckpt=$CKPT/pretrained_minigpt4_7b.pth,llama_model=$CKPT/vicuna-7b

The worker (scripts/minigpt4_worker.py) builds the model as the repository's ``demo.py`` does
(``Config`` from an eval config, the registry's model class ``from_config``, the
``cc_sbu_align`` eval image processor, ``Chat`` with the demo's ``###`` stopping criterion)
and answers with the demo's conversation template; see that script for the one deviation
(greedy decoding when the request's temperature is 0).

Model args besides python/repo/timeouts:

- ``ckpt`` (required): the MiniGPT-4 checkpoint (``pretrained_minigpt4_7b.pth`` ...);
- ``llama_model``: the Vicuna / Llama 2 folder (default: what the model config names; the
  repository ships a placeholder there, so in practice set this);
- ``cfg``: the eval config (default ``eval_configs/minigpt4_eval.yaml`` in the repo; use
  ``eval_configs/minigpt4_llama2_eval.yaml`` for the Llama 2 version);
- ``options``: further config overrides, ``;``-separated ``key=value`` (``model.low_resource=False``);
- ``device`` (``cuda:0``), ``num_beams`` (1), ``repetition_penalty`` (1.05, the demo's),
  ``max_length`` (2000, the demo's context limit).

MiniGPT-4 takes exactly one image per conversation (its ``Chat`` encodes one); other
requests are refused before they reach the worker.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmeval.models.base import ArchitectureCard, Capabilities, ModelArgsError
from mmeval.models.workers.adapter import COMMON_ARGS, WorkerModel
from mmeval.types import Request


class MiniGPT4(WorkerModel):
    """MiniGPT-4 in its own environment (worker process; python=, repo=, ckpt=; see docs/workers.md)."""

    name: ClassVar[str] = "minigpt4"
    script: ClassVar[str] = "minigpt4_worker.py"
    worker_version: ClassVar[int] = 1
    prompt_protocol: ClassVar[str | None] = "minigpt4"
    capabilities: ClassVar[Capabilities] = Capabilities(
        input_modalities=frozenset({"text", "image"}), output_modalities=frozenset({"text"}), batchable=True, max_images=1
    )
    card = ArchitectureCard(
        modality_encoder="EVA-CLIP ViT-g/14 + BLIP-2 Q-Former (frozen)",
        input_projector="linear",
        llm_backbone="Vicuna-7B/13B v0 or Llama-2-7B-chat",
        license="BSD-3-Clause",
        open_weights=True,
    )
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS | {
        "ckpt",
        "llama_model",
        "cfg",
        "options",
        "device",
        "num_beams",
        "repetition_penalty",
        "max_length",
    }

    def build_config(self, args: dict[str, str]) -> dict[str, Any]:
        if not args.get("ckpt"):
            raise ModelArgsError("minigpt4: model arg ckpt= is required: the MiniGPT-4 checkpoint file (e.g. pretrained_minigpt4_7b.pth)")
        ckpt = self.path_arg(args, "ckpt")
        cfg = self.path_arg(args, "cfg", self.repo / "eval_configs" / "minigpt4_eval.yaml", hint="Set cfg= to a MiniGPT-4 eval config.")
        llama = self.path_arg(args, "llama_model", kind="folder", hint="Set llama_model= to the Vicuna / Llama 2 weights folder.")
        options = [o.strip() for o in args.get("options", "").split(";") if o.strip()]
        bad = [o for o in options if "=" not in o]
        if bad:
            raise ModelArgsError(f"minigpt4: options takes ';'-separated key=value overrides, got {bad}")
        config: dict[str, Any] = {"ckpt": str(ckpt), "cfg": str(cfg), "options": options, "device": args.get("device", "cuda:0")}
        if llama is not None:
            config["llama_model"] = str(llama)
        config["num_beams"] = self.int_arg(args, "num_beams", 1, minimum=1)
        config["repetition_penalty"] = self.float_arg(args, "repetition_penalty", 1.05)
        config["max_length"] = self.int_arg(args, "max_length", 2000, minimum=16)
        return config

    def refuse(self, request: Request) -> str | None:
        n = len(request.media("image"))
        return None if n == 1 else f"MiniGPT-4 takes exactly one image per conversation, this request has {n}"
