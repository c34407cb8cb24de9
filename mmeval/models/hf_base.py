"""The base of the transformers adapters: model args, checkpoint identity, lazy loading, info.

:class:`HfCheckpointModel` holds what every ``hf-*`` adapter does the same way:

* parse the common model args (``pretrained``, ``revision``, ``dtype``, ``device``,
  ``device_map``, ``attn_implementation``), with bfloat16 on CUDA and float32 on CPU by default;
* resolve the checkpoint (:class:`~mmeval.models.hf_checkpoint.Checkpoint`) and read its config,
  so the card and fingerprint are known from files alone: the weights load on the first
  ``generate`` call, and a run served entirely from the response cache never loads them;
* load processor and weights once (``_ensure_loaded``), record what was loaded, and report it
  in ``info()``;
* one batched ``generate`` call with the shared decoding (``_generate_batch``).

Subclasses fill in small hooks: ``check_config`` (refuse other families, derive per-instance
settings), ``describe`` (the card), ``load_processor``, ``model_class``, ``after_load``,
``fingerprint_extra_fields``, ``info_identity`` and ``info_extra``. torch and transformers are
imported lazily so that resolving the adapter class (to check capabilities) stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from mmeval.models.base import ArchitectureCard, Model, ModelArgsError
from mmeval.models.hf_checkpoint import Checkpoint, _image_backend
from mmeval.models.hf_decoding import EMPTY_PROMPT, decode_rows, decode_with, empty_rows, generation_kwargs, text_responses, timed_generate
from mmeval.types import GenerationConfig, Request, Response

DTYPES = ("auto", "float32", "bfloat16", "float16")
COMMON_ARGS = frozenset({"pretrained", "revision", "dtype", "device", "device_map", "attn_implementation"})


def resolve_device_dtype(owner: str, args: dict[str, str], default_dtype: str | None = None) -> tuple[str, str]:
    """(device, dtype name): CUDA when present, bfloat16 there and float32 on CPU by default."""
    import torch

    device = args.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.get("dtype") or default_dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    if dtype not in DTYPES:
        raise ModelArgsError(f"{owner}: dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return device, dtype


def torch_dtype(name: str) -> Any:
    import torch

    return name if name == "auto" else getattr(torch, name)


def require_arg(owner: str, args: dict[str, str], key: str, what: str) -> str:
    value = args.get(key)
    if not value:
        raise ModelArgsError(f"{owner} needs {key}=<{what}>")
    return value


def load_weights(model_cls: Any, ckpt: Checkpoint, dtype_name: str, attn_implementation: str, device: str, device_map: str | None) -> Any:
    """``from_pretrained`` in eval mode, on ``device`` unless a ``device_map`` places it."""
    model = model_cls.from_pretrained(
        ckpt.source,
        dtype=torch_dtype(dtype_name),
        attn_implementation=attn_implementation,
        device_map=device_map,
        **ckpt.kwargs(),
    ).eval()
    if device_map is None:
        model.to(device)
    ckpt.loaded()
    return model


class HfCheckpointModel(Model):
    """A transformers checkpoint (hub id or local dir) behind the common model args."""

    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS
    default_dtype: ClassVar[str | None] = None  # None: bfloat16 on CUDA, float32 on CPU
    # Path handling of the checkpoint, see Checkpoint: the audio adapters are strict.
    strict_paths: ClassVar[bool] = False
    # With several bad args, which error is reported: BLIP-2 and IDEFICS always checked for a
    # missing ``pretrained`` before the dtype, LLaVA and the audio adapters after it.
    pretrained_checked_first: ClassVar[bool] = False

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        if self.pretrained_checked_first:
            require_arg(self.name, args, "pretrained", "hub id or local dir")
        self.device, self.dtype_name = resolve_device_dtype(self.name, args, self.default_dtype)
        self.device_map = args.get("device_map") or None
        self.attn_implementation = args.get("attn_implementation", "sdpa")
        self.parse_args(args)
        # Last: for tiny-llava this may build a checkpoint, so every cheap check comes first.
        self.ckpt = Checkpoint(self.name, self._resolve_pretrained(args), args.get("revision", "main"), strict=self.strict_paths)
        # PIL and torchvision resize differently, and transformers picks whichever is installed.
        self.image_backend: str | None = _image_backend() if "image" in self.capabilities.input_modalities else None
        self._config = self.ckpt.config()
        self.check_config()
        # Identity comes from files and config alone: the weights load on the first generate
        # call, so a run served entirely from the response cache never loads them.
        self.card = self.describe()
        self._fingerprint = self._weights_identity()
        self._loaded = False

    @property
    def pretrained(self) -> str:
        return self.ckpt.pretrained

    @property
    def local_dir(self) -> Path | None:
        return self.ckpt.local_dir

    # ------------------------------------------------------------------ hooks

    def parse_args(self, args: dict[str, str]) -> None:
        """Adapter-specific model args, after the common ones and before the checkpoint."""

    def _resolve_pretrained(self, args: dict[str, str]) -> str:
        """The checkpoint to load (tiny-llava builds one when ``pretrained`` is absent)."""
        return require_arg(self.name, args, "pretrained", "hub id or local dir")

    def check_config(self) -> None:
        """Refuse a checkpoint of another family (ModelArgsError) and derive per-instance
        settings from ``self._config``, before the card and fingerprint are made."""

    def describe(self) -> ArchitectureCard:
        """The instance's card, from the config (``params`` from the safetensors headers)."""
        return self.card

    def fingerprint_extra_fields(self) -> dict[str, Any]:
        """Settings besides dtype, image backend and weights that change outputs."""
        return {}

    def load_processor(self, kwargs: dict[str, Any]) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(self.ckpt.source, **kwargs)

    def model_class(self) -> Any:
        raise NotImplementedError

    def after_load(self) -> None:
        """What the adapter reads off the loaded processor and model (tokens, EOS ids...)."""

    def info_identity(self) -> dict[str, Any]:
        """``info()`` entries right after pretrained/revision/commit (family, sizes...)."""
        return {}

    def info_extra(self) -> dict[str, Any]:
        """``info()`` entries after the runtime settings (processor, padding...)."""
        return {}

    # ------------------------------------------------------------------ loading

    def _weights_identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {"dtype": self.dtype_name}
        if self.image_backend is not None:
            ident["image_backend"] = self.image_backend
        return {**ident, **self.fingerprint_extra_fields(), **self.ckpt.identity()}

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its tqdm bars would tear mmeval's rich progress display
        self.processor = self.load_processor(self.ckpt.kwargs())
        self.model = load_weights(self.model_class(), self.ckpt, self.dtype_name, self.attn_implementation, self.device, self.device_map)
        self.tokenizer = self.processor.tokenizer
        self.torch_dtype = self.model.dtype
        self.input_device = self.model.device
        if self.image_backend is not None:
            self.image_backend = getattr(self.processor.image_processor, "backend", self.image_backend)
        self.after_load()
        # The exact parameter count, now that it is known (hub checkpoints have no local headers).
        self.card = replace(self.card, params=sum(p.numel() for p in self.model.parameters()))
        self._loaded = True

    # ------------------------------------------------------------------ identity

    def fingerprint_extra(self) -> Any:
        return self._fingerprint

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            **self.ckpt.info(),
            **self.info_identity(),
            "dtype": str(self.torch_dtype).removeprefix("torch.") if self._loaded else self.dtype_name,
            "device": str(self.input_device) if self._loaded else (self.device_map or self.device),
            "device_map": self.device_map,
            "attn_implementation": self.attn_implementation,
            **self.info_extra(),
            "weights_loaded": self._loaded,
            "prompt_protocol": f"{self.prompt_protocol} v{self.prompt_protocol_version}",
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }

    def _image_processor_info(self) -> str | None:
        if self._loaded:
            return f"{type(self.processor.image_processor).__name__} ({self.image_backend})"
        return self.image_backend

    def _feature_extractor_info(self) -> str | None:
        if not self._loaded:
            return None
        fe = self.processor.feature_extractor
        return f"{type(fe).__name__} ({fe.feature_size} mel bins, {fe.sampling_rate} Hz, {fe.chunk_length} s window)"

    # ------------------------------------------------------------------ generation

    def _new_tokens(self, out: Any, inputs: Any) -> Any:
        """The generated part of ``generate``'s output: decoder-only models return prompt + answer."""
        return out[:, inputs["input_ids"].shape[1] :]

    def _generate_group(self, gen: GenerationConfig, items: list[tuple[Request, Any]]) -> dict[str, Response]:
        """Build the batched model inputs of ``items`` and call ``_generate_batch`` (the hook of
        every adapter that uses ``_generate_batch``)."""
        raise NotImplementedError

    def _generate_batch(
        self, gen: GenerationConfig, items: Sequence[tuple[Request, Any]], inputs: Any, stop_ids: set[int], **fixed: Any
    ) -> dict[str, Response]:
        """One ``generate`` call for ``items`` (model ``inputs`` already batched and on the
        device; ``fixed``: adapter-specific generate kwargs); answers cut at ``stop_ids``.
        A request whose prompt tokenized to nothing fails alone (see ``_drop_empty_rows``)."""
        empty = empty_rows(inputs)
        if empty:
            return self._drop_empty_rows(gen, list(items), empty)
        kwargs = generation_kwargs(gen, self.tokenizer, **fixed)
        out, elapsed = timed_generate(self.model, inputs, kwargs)
        rows = self._new_tokens(out, inputs).tolist()
        return text_responses(items, decode_rows(rows, decode_with(self.tokenizer), stop_ids, gen), elapsed)

    def _drop_empty_rows(self, gen: GenerationConfig, items: list[tuple[Request, Any]], empty: list[int]) -> dict[str, Response]:
        """Fail the requests whose prompts tokenized to nothing and generate the others in a
        batch of their own. Their inputs are built again by the adapter: which rows of the media
        tensors (pixel values, image masks) belong to which request is the adapter's business.
        Each round drops at least one request, so this ends."""
        skip = set(empty)
        out = {items[i][0].id: Response.failed(items[i][0].id, EMPTY_PROMPT) for i in sorted(skip)}
        rest = [item for i, item in enumerate(items) if i not in skip]
        if rest:
            out.update(self._generate_group(gen, rest))
        return out
