"""A tiny random CLIP checkpoint for tests: same files, same loading code as a hub CLIP.

``tiny_clip_dir()`` builds (once, atomically, under ``<cache>/tiny/tiny-clip-v1``) a
``CLIPModel`` with random seeded weights (hidden 32, 2 layers per tower, 32x32 images in 8x8
patches, 16-d projection), a ``CLIPTokenizer`` and a ``CLIPImageProcessorPil``, saved with
``save_pretrained``. :class:`mmeval.metrics.extractors.clip.ClipEmbedder` loads it exactly as
it loads ``openai/clip-vit-base-patch32``, so CLIPScore / CLIPSIM / clip-FID run end to end in
tests with ``--metric-args clip_model=<tiny_clip_dir()>``. Its numbers mean nothing.

The tokenizer follows CLIP's layout rather than ``tiny_common.train_tokenizer``'s: transformers'
``CLIPTokenizer`` rebuilds its own pipeline (lower-casing normaliser, CLIP's word regex, byte-level
BPE with a ``</w>`` end-of-word suffix, ``<|startoftext|> ... <|endoftext|>`` around every text)
from a vocabulary and merges, so the BPE is trained here with that same pipeline on
``tiny_common.CORPUS``, and the vocabulary starts with every byte symbol and every byte symbol +
``</w>`` (as CLIP's does) so no input ever maps to the unknown token.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmeval.models.tiny_common import CORPUS, atomic_build, cache_root

NAME = "tiny-clip-v1"
SEED = 0
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TEXT_LEN = 77  # CLIP's context length: long captions are truncated to it, as with real CLIP
IMAGE_SIZE, PATCH_SIZE = 32, 8
# CLIP's pre-tokenisation: special tokens, contractions, letter runs, single digits, other runs.
CLIP_WORD_REGEX = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def tiny_clip_dir() -> Path:
    out = cache_root() / "tiny" / NAME
    if (out / "config.json").exists():
        return out
    return atomic_build(out, _build)


def _train_clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(CLIP_WORD_REGEX), behavior="removed", invert=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), end_of_word_suffix="</w>", show_progress=False
    )
    tok.train_from_iterator(CORPUS.splitlines() * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for symbol in [*alphabet, *(a + "</w>" for a in alphabet)]:
        vocab.setdefault(symbol, len(vocab))
    for symbol, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(symbol, len(vocab))
    for special in (BOS, EOS):
        vocab.setdefault(special, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return vocab, merges  # type: ignore[return-value]


def _build(out: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    vocab, merges = _train_clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TEXT_LEN)
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_TEXT_LEN,
        "projection_dim": 16,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
        "projection_dim": 16,
    }
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(SEED)
        model = CLIPModel(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(out)
