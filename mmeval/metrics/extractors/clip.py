"""CLIP image and text embeddings (CLIPScore, CLIPSIM) and CLIP image features (clip-FID).

:class:`ClipEmbedder` wraps a transformers ``CLIPModel`` with its ``CLIPTokenizer`` and a
``CLIPImageProcessorPil`` (the PIL image processor: no torchvision needed). Embeddings are the
model's *projected* embeddings (``get_image_features`` / ``get_text_features``), L2-normalised,
in float64, computed in batches of ``feature_batch_size``; a dot product of two of them is the
cosine similarity CLIPScore is built on.

Texts longer than the model's context (77 tokens for every released CLIP) are truncated, with
the end-of-text token kept last, because CLIP's text tower pools at that token and has no
position embeddings beyond 77: this is what torchmetrics' CLIPScore does too (it warns and
truncates). Long COCO captions rarely reach it; long T2V prompts can.

Weights load lazily on first use, so building a metric (``check_metric_args``, before the model
under test loads) only checks cheaply: a ``clip_model`` that looks like a local path must
exist. A hub id is resolved at first use; offline (no network, not in the Hugging Face cache) it
fails there with an ``ExtractorWeightsError`` naming ``clip_model``. The default model is
:data:`DEFAULT_CLIP_MODEL`, the checkpoint torchmetrics' CLIPScore and most T2I/T2V papers use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.features import (
    ExtractorError,
    ExtractorWeightsError,
    FeatureExtractor,
    MediaSource,
    checkpoint_fingerprint,
    media_part,
)

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
DEFAULT_BATCH_SIZE = 32
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _looks_local(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (absolute, ./, ~, deeper) is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def batch_size_arg(value: Any, default: int = DEFAULT_BATCH_SIZE) -> int:
    """``feature_batch_size`` from YAML (int) or --metric-args (str), validated."""
    if value is None:
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ExtractorError(f"feature_batch_size must be a positive integer, got {value!r}")
    return n


class ClipEmbedder:
    """L2-normalised CLIP embeddings of images and texts from one checkpoint.

    ``clip_model``: a hub id or a local directory saved with ``save_pretrained``;
    ``clip_revision``: a hub revision (commit, tag, branch) to pin."""

    def __init__(
        self, clip_model: str | None = None, clip_revision: str | None = None, device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.clip_model = str(clip_model or DEFAULT_CLIP_MODEL)
        self.clip_revision = str(clip_revision) if clip_revision else None
        self.device = str(device or "cpu")
        self.batch_size = batch_size_arg(batch_size)
        self.local = Path(self.clip_model).expanduser()
        if self.local.exists():
            if not (self.local / "config.json").is_file():
                raise ExtractorWeightsError(f"clip_model={self.clip_model}: no config.json there; expected a CLIP checkpoint directory")
        elif _looks_local(self.clip_model):
            raise ExtractorWeightsError(
                f"clip_model={self.clip_model}: no such directory. Pass --metric-args clip_model=PATH to a CLIP checkpoint "
                f"saved with save_pretrained, or a hub id such as {DEFAULT_CLIP_MODEL}"
            )
        self._loaded: tuple[Any, Any, Any] | None = None

    @property
    def is_local(self) -> bool:
        return self.local.exists()

    def weights_id(self) -> str:
        """What identifies weights and preprocessing (a reference-feature cache key): for a local
        checkpoint, a hash of its config, preprocessor config and weight-file fingerprint; for a
        hub checkpoint, its id and revision."""
        if not self.is_local:
            return f"{self.clip_model}@{self.clip_revision or 'main'}"
        return f"local-{checkpoint_fingerprint(self.local, ('config.json', 'preprocessor_config.json'), WEIGHT_FILES)}"

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            import torch
            from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # its tqdm bars would tear mmeval's progress display
            source = str(self.local) if self.is_local else self.clip_model
            kwargs = {"revision": self.clip_revision} if self.clip_revision else {}
            try:
                model = CLIPModel.from_pretrained(source, **kwargs)
                tokenizer = CLIPTokenizer.from_pretrained(source, **kwargs)
                processor = CLIPImageProcessorPil.from_pretrained(source, **kwargs)
            except Exception as exc:  # OSError offline, ValueError for a non-CLIP config, network errors...
                raise ExtractorWeightsError(
                    f"clip_model={self.clip_model}: cannot load a CLIP checkpoint ({exc}). Offline, download it first "
                    "(huggingface-cli download) or pass --metric-args clip_model=PATH to a local copy"
                ) from exc
            model = model.to(device=torch.device(self.device), dtype=torch.float32).eval()
            self._loaded = (model, tokenizer, processor)
        return self._loaded

    def max_text_tokens(self) -> int:
        model, tokenizer, _ = self._load()
        limit = int(model.config.text_config.max_position_embeddings)
        tok_max = getattr(tokenizer, "model_max_length", None)
        return min(limit, int(tok_max)) if isinstance(tok_max, int) and tok_max > 0 else limit

    def image_embeddings(self, images: Sequence[Any]) -> np.ndarray:
        """(len(images), projection_dim) unit vectors for RGB PIL images."""
        import torch

        model, _, processor = self._load()
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start : start + self.batch_size])
            pixels = processor(images=chunk, return_tensors="pt")["pixel_values"].to(model.device)
            with torch.inference_mode():
                out.append(_pooled(model.get_image_features(pixel_values=pixels)))
        return _normalise(out, int(model.config.projection_dim))

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), projection_dim) unit vectors; texts are truncated to the context length."""
        import torch

        model, tokenizer, _ = self._load()
        max_len = self.max_text_tokens()
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [str(t) for t in texts[start : start + self.batch_size]]
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(model.device)
            with torch.inference_mode():
                out.append(_pooled(model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])))
        return _normalise(out, int(model.config.projection_dim))


def _pooled(output: Any) -> Any:
    """transformers 5 returns an output object whose pooler_output is the projected embedding."""
    return output if hasattr(output, "shape") else output.pooler_output


def _normalise(chunks: list[Any], dim: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, dim))
    x = np.concatenate([c.detach().to("cpu").double().numpy() for c in chunks])
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


class ClipImageFeatures(FeatureExtractor):
    """Extractor ``clip``: normalised CLIP image embeddings, for a Fréchet distance in CLIP space
    (clip-FID, Kynkäänniemi et al. 2023). The id names the weights, so cached reference
    features from another checkpoint are never reused."""

    modality = "image"
    args: ClassVar[frozenset[str]] = frozenset({"clip_model", "clip_revision", "device", "feature_batch_size"})

    def __init__(
        self, clip_model: str | None = None, clip_revision: str | None = None, device: str = "cpu", feature_batch_size: Any = None
    ) -> None:
        self.embedder = ClipEmbedder(clip_model, clip_revision, device, batch_size_arg(feature_batch_size))
        self.id = f"clip-image-v1:{self.embedder.weights_id()}"
        self._dim = 0

    @property  # type: ignore[override]
    def dim(self) -> int:  # known once the config is read; reading it is cheap but not free
        if not self._dim:
            model, _, _ = self.embedder._load()
            self._dim = int(model.config.projection_dim)
        return self._dim

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        # Decode one batch at a time: a reference set can hold tens of thousands of images.
        bs = self.embedder.batch_size
        chunks = [
            self.embedder.image_embeddings([media_part("image", src).load_image() for src in items[i : i + bs]])
            for i in range(0, len(items), bs)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim))
