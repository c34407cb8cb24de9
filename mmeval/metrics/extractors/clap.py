"""CLAP audio and text embeddings (transformers ``ClapModel``), for FAD-CLAP and the CLAP score.

``ClapEmbedder`` loads a CLAP checkpoint lazily (``ClapModel`` + ``ClapProcessor``: the
``ClapFeatureExtractor`` and the RoBERTa tokenizer) from ``clap_model``: a directory saved
with ``save_pretrained`` or a Hugging Face hub id. The default, ``laion/clap-htsat-unfused``, is
the CLAP whose text tower NExT-GPT's audio decoder (AudioLDM) conditions on. A local directory
is checked at construction (cheap, before any model loads); a hub id is resolved by
``from_pretrained`` at first use (from the local hub cache, or downloaded).

Embeddings are the projected, L2-normalised pooled outputs, returned as float64.

Determinism, which transformers' feature extractor does not give by itself:
- Audio is resampled to the feature extractor's rate (48 kHz for LAION CLAP) with
  :func:`mmeval.media.audio.decode_audio` (scipy polyphase).
- Clips longer than the extractor's window (10 s for LAION CLAP) are cut to their first
  window for ``rand_trunc`` checkpoints (the unfused ones) instead of at a random offset.
  ``fusion`` checkpoints see the whole clip; their random chunk choice is seeded per clip.
- ``is_longer`` is the clip's true length test. The extractor otherwise marks a random clip
  of each batch "longer" (a training-time device), which would make a fused model's
  embedding of a clip depend on the batch it came in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.features import ExtractorWeightsError, FeatureExtractor, MediaSource, checkpoint_fingerprint, media_part

DEFAULT_CLAP_MODEL = "laion/clap-htsat-unfused"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def _local_config(source: str, revision: str | None) -> Path | None:
    """The checkpoint's config.json when it is on disk; raises for a bad local path."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExtractorWeightsError(f"clap_model={source}: the directory has no config.json; it is not a transformers CLAP checkpoint")
        return path / "config.json"
    looks_like_path = source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source or path.exists()
    if looks_like_path:
        raise ExtractorWeightsError(
            f"clap_model={source}: no such checkpoint directory; pass --metric-args clap_model=PATH "
            f"(a save_pretrained directory of e.g. {DEFAULT_CLAP_MODEL}) or a hub id"
        )
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json", revision=revision)
    return Path(cached) if isinstance(cached, str) else None


class ClapEmbedder:
    """Batched CLAP audio/text embeddings. Nothing is loaded until the first embedding."""

    def __init__(self, clap_model: str | None = None, clap_revision: str | None = None, device: str = "cpu", batch_size: int = 16) -> None:
        self.source = str(clap_model or DEFAULT_CLAP_MODEL)
        self.revision = clap_revision or None
        self.device = str(device)
        self.batch_size = max(1, int(batch_size))
        config = _local_config(self.source, self.revision)
        self.dim = int(json.loads(config.read_text()).get("projection_dim", 0)) if config else 0
        self.id = self._identity(config)
        self._model: Any = None
        self._processor: Any = None

    def _identity(self, config: Path | None) -> str:
        """Names the weights and preprocessing (the reference-feature cache key)."""
        if config is None:
            return f"clap:{self.source}@{self.revision or 'main'}"
        configs = (config.name, "preprocessor_config.json", "processor_config.json")
        return f"clap-{checkpoint_fingerprint(config.parent, configs, _WEIGHT_FILES)}"

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import ClapModel, ClapProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its tqdm bars would tear mmeval's progress display
        try:
            processor = ClapProcessor.from_pretrained(self.source, revision=self.revision)
            model = ClapModel.from_pretrained(self.source, revision=self.revision)
        except (OSError, ValueError) as exc:
            raise ExtractorWeightsError(f"clap_model={self.source}: cannot load a CLAP model and processor: {exc}") from exc
        self._processor, self._model = processor, model.eval().to(self.device)
        self.dim = int(model.config.projection_dim)

    @property
    def sampling_rate(self) -> int:
        self._load()
        return int(self._processor.feature_extractor.sampling_rate)

    def _audio_inputs(self, waves: list[np.ndarray]) -> dict[str, Any]:
        import torch

        fe = self._processor.feature_extractor
        feats, longer = [], []
        for w in waves:
            if fe.truncation != "fusion":
                w = w[: fe.nb_max_samples]  # first window, not a random crop
            state = np.random.get_state()
            np.random.seed(0)
            try:
                out = fe(w, sampling_rate=fe.sampling_rate, return_tensors="np")
            finally:
                np.random.set_state(state)
            feats.append(out["input_features"])
            longer.append(w.shape[0] > fe.nb_max_samples)
        return {
            "input_features": torch.as_tensor(np.concatenate(feats), dtype=torch.float32, device=self.device),
            "is_longer": torch.as_tensor(longer, device=self.device)[:, None],
        }

    def audio_embeddings(self, clips: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
        """(len(clips), dim) unit vectors for (mono samples, sample rate) pairs."""
        import torch

        from mmeval.media.audio import resample

        rate = self.sampling_rate
        out = []
        for i in range(0, len(clips), self.batch_size):
            waves = [
                np.asarray(x if r == rate else resample(x, r, rate), dtype=np.float64).reshape(-1)
                for x, r in clips[i : i + self.batch_size]
            ]
            with torch.inference_mode():
                emb = self._model.get_audio_features(**self._audio_inputs(waves))
            out.append(_unit(emb))
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    def source_embeddings(self, items: Sequence[MediaSource]) -> np.ndarray:
        """Audio embeddings of paths / encoded bytes, decoded one batch at a time (a reference
        set resampled to 48 kHz all at once would not fit in memory)."""
        from mmeval.media.audio import decode_audio

        out = []
        for i in range(0, len(items), self.batch_size):
            clips = [decode_audio(media_part("audio", src), self.sampling_rate) for src in items[i : i + self.batch_size]]
            out.append(self.audio_embeddings(clips))
        return np.concatenate(out) if out else np.zeros((0, self.dim))

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) unit vectors."""
        import torch

        self._load()
        tok = self._processor.tokenizer
        cfg = self._model.config.text_config
        # RoBERTa positions start after the pad id: the longest input the position table takes.
        max_len = min(int(tok.model_max_length), cfg.max_position_embeddings - (cfg.pad_token_id or 0) - 1)
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = tok(list(texts[i : i + self.batch_size]), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            with torch.inference_mode():
                emb = self._model.get_text_features(
                    input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
                )
            out.append(_unit(emb))
        return np.concatenate(out) if out else np.zeros((0, self.dim))


def _unit(output: Any) -> np.ndarray:
    tensor = output if hasattr(output, "detach") else output.pooler_output
    x = tensor.detach().double().cpu().numpy()
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ClapAudioFeatures(FeatureExtractor):
    """CLAP audio embeddings as a FAD feature extractor (one embedding per clip)."""

    modality: ClassVar = "audio"
    args: ClassVar[frozenset[str]] = frozenset({"clap_model", "clap_revision", "device", "feature_batch_size"})

    def __init__(
        self, clap_model: str | None = None, clap_revision: str | None = None, device: str = "cpu", feature_batch_size: int | str = 16
    ) -> None:
        self.embedder = ClapEmbedder(clap_model, clap_revision, device, int(feature_batch_size))
        self.id = self.embedder.id
        self.dim = self.embedder.dim

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        feats = self.embedder.source_embeddings(items)
        self.dim = self.embedder.dim
        return feats
