"""Tiny random Stable Diffusion, AudioLDM and text-to-video pipelines, built locally for tests.

Nothing can be downloaded in CI, yet the generator adapters must run their real path:
``from_pretrained`` on a pipeline directory, tokenizer, text encoder, denoising loop, autoencoder
(and vocoder), seeded per sample. So each build assembles a miniature pipeline from the same
component classes as the released checkpoint, with random weights (seeded: same seed, same
bytes), saves it with ``save_pretrained`` into the cache, and the ``tiny-*`` adapters load it
through the real adapters unchanged. The outputs are noise; the plumbing is real.

* ``tiny-sd``: ``StableDiffusionPipeline`` = CLIP text encoder + CLIP BPE tokenizer (trained on
  the fly on the shared corpus, with CLIP's ``</w>`` word ends) + ``UNet2DConditionModel`` +
  ``AutoencoderKL`` + DDIM; no safety checker. 32x32 images.
* ``tiny-audioldm``: ``AudioLDMPipeline`` = CLAP text encoder (with projection) + RoBERTa BPE
  tokenizer + ``UNet2DConditionModel`` conditioned through its class embedding (as AudioLDM is) +
  one-channel ``AutoencoderKL`` on mel spectrograms + ``SpeechT5HifiGan`` vocoder at 16 kHz.
* ``tiny-t2v``: ``TextToVideoSDPipeline`` (Zeroscope's) = CLIP text encoder + ``UNet3DConditionModel``
  + ``AutoencoderKL`` decoding frame by frame. 32x32, 4 frames.

Sizes follow what diffusers' own fast tests show to work (two resolution levels, group norms
that divide the channels); defaults are 2 denoising steps so a test batch runs in well under a
second. None of the three needs torchvision.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

from mmeval.models.base import ArchitectureCard, ModelArgsError
from mmeval.models.diffusers_gen import DiffusersAudio, DiffusersImage, DiffusersVideo
from mmeval.models.tiny_common import CORPUS, atomic_build, cache_root, train_tokenizer

TINY_DIFFUSERS_VERSION = "v1"  # bump when a recipe changes: the directory name is the cache key
MAX_PROMPT_TOKENS = 77  # CLIP's context, also AudioLDM's tokenizer limit
CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's ids 0..4


# --------------------------------------------------------------------------- tokenizers


def _vocab_and_merges(tok: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges


def clip_tokenizer(n_merges: int = 240) -> Any:
    """A ``CLIPTokenizer`` whose BPE merges are learnt here from the shared corpus, pre-tokenized
    and normalised by CLIP's own rules (lower case, ``</w>`` word ends). The vocabulary holds every
    byte alone and at a word end, as CLIP's does, so no prompt maps to unknown tokens.

    The merges are learnt by a few lines of plain BPE rather than tokenizers' trainer: with a
    word-end suffix that trainer breaks ties between equally frequent pairs differently from run
    to run, and the build must be byte-for-byte reproducible. Ties go to the smallest pair."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    rules = CLIPTokenizer().backend_tokenizer  # CLIP's normaliser and pre-tokenizer, empty vocabulary
    words: Counter[tuple[str, ...]] = Counter()
    for line in CORPUS.splitlines():
        for word, _ in rules.pre_tokenizer.pre_tokenize_str(rules.normalizer.normalize_str(line)):
            words[(*word[:-1], word[-1] + "</w>")] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        words = Counter({_merge(word, best): count for word, count in words.items()})
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    pieces = [*CLIP_SPECIALS, *alphabet, *(ch + "</w>" for ch in alphabet), *(a + b for a, b in merges)]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_PROMPT_TOKENS)


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def roberta_tokenizer() -> Any:
    """A ``RobertaTokenizer`` (AudioLDM's CLAP text side) with a byte-level BPE vocabulary."""
    from transformers import RobertaTokenizer

    vocab, merges = _vocab_and_merges(train_tokenizer(ROBERTA_SPECIALS, bos=None))
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_PROMPT_TOKENS)


def _clip_text_encoder(tokenizer: Any, hidden: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_PROMPT_TOKENS,
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def _ddim() -> Any:
    from diffusers import DDIMScheduler

    # Stable Diffusion's schedule (scaled linear betas 0.00085..0.012, steps offset 1).
    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )


def _vae(channels: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )


# --------------------------------------------------------------------------- pipelines


def _tiny_sd() -> Any:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, hidden=32)
    unet = UNet2DConditionModel(
        sample_size=16,  # x the autoencoder's factor 2 = 32x32 images
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    return StableDiffusionPipeline(
        vae=_vae(3),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _tiny_audioldm() -> Any:
    from diffusers import AudioLDMPipeline, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    tokenizer = roberta_tokenizer()
    text_encoder = ClapTextModelWithProjection(
        ClapTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    # AudioLDM conditions on the CLAP text embedding through the UNet's class embedding
    # (concatenated with the timestep embedding), not through cross-attention.
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=(8, 16),
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=16,
        class_embeddings_concat=True,
        norm_num_groups=4,
    )
    # 8 mel bins, 16x upsampling at 16 kHz: one mel frame per millisecond.
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=8,
            sampling_rate=16000,
            upsample_initial_channel=16,
            upsample_rates=[4, 4],
            upsample_kernel_sizes=[8, 8],
            resblock_kernel_sizes=[3, 5],
            resblock_dilation_sizes=[[1, 3], [1, 3]],
            normalize_before=False,
            initializer_range=0.1,  # the default 0.01 shrinks the signal below 16-bit resolution
        )
    ).eval()
    return AudioLDMPipeline(vae=_vae(1), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=_ddim(), vocoder=vocoder)


def _tiny_t2v() -> Any:
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    tokenizer = clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, hidden=16)
    unet = UNet3DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    return TextToVideoSDPipeline(vae=_vae(3), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=_ddim())


BUILDERS: dict[str, Callable[[], Any]] = {"tiny-sd": _tiny_sd, "tiny-audioldm": _tiny_audioldm, "tiny-t2v": _tiny_t2v}


def build_tiny_pipeline(kind: str, out_dir: Path, seed: int = 0) -> Path:
    """Build the ``kind`` pipeline (a key of BUILDERS) with random weights into ``out_dir``,
    atomically; same seed, same bytes."""
    import torch

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        BUILDERS[kind]().save_pretrained(tmp, safe_serialization=True)

    out_dir = Path(out_dir)
    try:
        return atomic_build(out_dir, build)
    except OSError:
        # atomic_build recognises a lost race by a config.json; a pipeline has model_index.json.
        if not (out_dir / "model_index.json").is_file():
            raise
        return out_dir


def tiny_pipeline_dir(kind: str, seed: int = 0, root: Path | None = None) -> Path:
    """``<cache root>/tiny/<kind>-v1[-seedN]``, built if absent."""
    path = cache_root(root) / "tiny" / (f"{kind}-{TINY_DIFFUSERS_VERSION}" + (f"-seed{seed}" if seed else ""))
    if not (path / "model_index.json").is_file():
        build_tiny_pipeline(kind, path, seed)
    return path


class _TinyBuild:
    """Mixin: ``pretrained`` defaults to the locally built pipeline (``seed`` picks the weights)."""

    name: ClassVar[str]
    card: ArchitectureCard

    def _resolve_pretrained(self, args: dict[str, str]) -> str:
        if "pretrained" in args:
            if "seed" in args:
                raise ModelArgsError(f"{self.name}: give either 'pretrained' or 'seed', not both")
            return args["pretrained"]
        try:
            seed = int(args.get("seed", "0"))
        except ValueError:
            raise ModelArgsError(f"{self.name}: seed must be an integer, got {args['seed']!r}") from None
        if seed < 0:
            raise ModelArgsError(f"{self.name}: seed must be >= 0, got {seed}")
        return str(tiny_pipeline_dir(self.name, seed))

    def describe(self) -> ArchitectureCard:
        card = super().describe()  # type: ignore[misc]
        return ArchitectureCard(
            modality_encoder=f"tiny random {card.modality_encoder}",
            modality_generator=f"tiny random {card.modality_generator}",
            params=card.params,
            license="none (random weights, built locally)",
            open_weights=True,
        )


class TinyStableDiffusion(_TinyBuild, DiffusersImage):
    """``diffusers-image`` on the tiny random Stable Diffusion build (32x32, 2 steps)."""

    name: ClassVar[str] = "tiny-sd"
    allowed_args: ClassVar[frozenset[str]] = DiffusersImage.allowed_args | {"seed"}
    defaults: ClassVar[dict[str, str]] = {"num_inference_steps": "2", "dtype": "float32"}


class TinyAudioLDM(_TinyBuild, DiffusersAudio):
    """``diffusers-audio`` on the tiny random AudioLDM build (16 kHz, 0.25 s, 2 steps)."""

    name: ClassVar[str] = "tiny-audioldm"
    allowed_args: ClassVar[frozenset[str]] = DiffusersAudio.allowed_args | {"seed"}
    defaults: ClassVar[dict[str, str]] = {"num_inference_steps": "2", "audio_length_s": "0.25", "dtype": "float32"}


class TinyTextToVideo(_TinyBuild, DiffusersVideo):
    """``diffusers-video`` on the tiny random text-to-video build (32x32, 4 frames, 2 steps)."""

    name: ClassVar[str] = "tiny-t2v"
    allowed_args: ClassVar[frozenset[str]] = DiffusersVideo.allowed_args | {"seed"}
    defaults: ClassVar[dict[str, str]] = {"num_inference_steps": "2", "num_frames": "4", "dtype": "float32"}
