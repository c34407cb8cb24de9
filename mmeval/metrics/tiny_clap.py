"""A tiny, randomly initialised CLAP checkpoint, for tests (CPU, offline, a few seconds).

It has the layout of ``laion/clap-htsat-unfused`` (an HTS-AT Swin audio tower, a RoBERTa text
tower, 2-layer projections, ``ClapProcessor`` = ``ClapFeatureExtractor`` + a RoBERTa-style
byte-level BPE tokenizer) at toy sizes: 16 mel bands at 16 kHz, at most 2 s of audio per clip
(a 64x64 "spectrogram image"), hidden sizes 16-32, projection 16. Saved with
``save_pretrained`` and loaded back through :class:`~mmeval.metrics.extractors.clap.ClapEmbedder`
exactly as a hub checkpoint is, so ``--metric-args clap_model=<tiny_clap_dir()>`` exercises
the real code path. Its similarities are noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmeval.models.tiny_common import atomic_build, cache_root, train_tokenizer

NAME = "clap-v1"
SAMPLE_RATE = 16_000
MEL_BANDS = 16
PROJECTION = 16
# Weight matrices are scaled up after the random init: at the default std every caption gets
# nearly the same text embedding (cosines ~0.999); at 6x they differ (~0.7-0.9), so tests can
# tell captions and clips apart.
WEIGHT_SCALE = 6.0
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's ids 0..4


def _tokenizer() -> Any:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = train_tokenizer(SPECIALS, bos=None)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
        padding_side="right",
        model_max_length=64,
    )


def _build(out: Path) -> None:
    import torch
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig

    tokenizer = _tokenizer()
    text = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        projection_dim=PROJECTION,
    )
    audio = ClapAudioConfig(
        num_mel_bins=MEL_BANDS,
        spec_size=64,  # freq_ratio 4: up to 256 frames (2.56 s at a 10 ms hop) x 16 bands
        patch_size=4,
        patch_stride=[4, 4],
        patch_embeds_hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        window_size=4,
        hidden_size=32,
        projection_dim=PROJECTION,
        num_classes=4,
        enable_fusion=False,
    )
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=PROJECTION)
    torch.manual_seed(0)
    model = ClapModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(WEIGHT_SCALE)
    model.save_pretrained(out)
    extractor = ClapFeatureExtractor(
        feature_size=MEL_BANDS,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        max_length_s=2,
        fft_window_size=512,
        frequency_min=50,
        frequency_max=7000,
        truncation="rand_trunc",  # as the unfused LAION checkpoints
        padding="repeatpad",
    )
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)


def tiny_clap_dir(root: Path | None = None) -> Path:
    """The tiny CLAP checkpoint directory, built once under the cache root."""
    out = cache_root(root) / "tiny" / NAME
    if not (out / "config.json").is_file():
        atomic_build(out, _build)
    return out
