"""Text -> image / audio / video generators on diffusers pipelines (Stable Diffusion, AudioLDM, Zeroscope).

The modality generators of any-to-any systems (NExT-GPT uses Stable Diffusion, AudioLDM and
Zeroscope) are evaluated on their own through these adapters: ``diffusers-image``,
``diffusers-audio`` and ``diffusers-video``. One design serves the three:

* **Checkpoint.** ``pretrained`` is a pipeline directory (``save_pretrained`` output, with a
  ``model_index.json``) or a hub id pinned to one commit, as in the transformers adapters
  (:class:`~mmeval.models.hf_checkpoint.Checkpoint`). ``model_index.json`` is read at
  construction, so the pipeline class, the card and the fingerprint are known from files alone;
  the weights load on the first ``generate`` call (a run served from the response cache never
  loads them).
* **Pipeline class.** ``pipeline=<diffusers class name>`` when given; otherwise the class named in
  ``model_index.json`` (what ``DiffusionPipeline.from_pretrained`` picks). The image adapter maps
  an img2img or inpainting checkpoint to its text-to-image pipeline, as
  ``AutoPipelineForText2Image`` does. Settings left unset take the pipeline's own defaults (its
  ``__call__`` signature), which are recorded in ``info()`` and the fingerprint; a setting the
  pipeline does not take is refused at construction.
* **Prompt.** The text of the user messages, joined by newlines. System text is ignored: a
  diffusion text encoder conditions on every token, and a chat-style system prompt ("You are a
  helpful assistant") would only pull the sample away from the caption. Media input fails the
  request (the runner already refuses such tasks by capabilities).
* **Seeds.** Each request gets its own ``torch.Generator`` seeded with
  :func:`~mmeval.models.base.sample_seed` (generation seed + request id), passed as a list for a
  batch, so a sample's noise does not depend on the batch it lands in. The generators live on the
  CPU (diffusers draws the noise there and moves it): the same sample starts from the same latents
  on any device, where a CUDA generator would draw other numbers than a CPU one.
* **Model args.** ``pretrained``, ``revision``, ``dtype`` (float16 on CUDA, float32 on CPU by
  default), ``device``, ``pipeline``, ``num_inference_steps``, ``guidance_scale``,
  ``negative_prompt`` (one for every prompt; empty means none), and per modality ``height``,
  ``width``, ``num_frames``, ``fps`` (video only: the APNG's frame rate), ``audio_length_s``.
* **Output.** ``output_type="np"``, rounded to uint8 (images, video frames) or 16-bit PCM (audio)
  deterministically, encoded as PNG / APNG / WAV artifacts.

The card puts the diffusion model, autoencoder and vocoder under ``modality_generator``; the
text encoder(s) conditioning it under ``modality_encoder`` (the input side); a ``language_model``
component (AudioLDM 2's GPT-2) under ``llm_backbone`` and a ``projection_model`` under
``output_projector``. torch and diffusers are imported lazily.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from mmeval.models.base import ArchitectureCard, Capabilities, Model, ModelArgsError, sample_seed
from mmeval.models.hf_base import require_arg, torch_dtype
from mmeval.models.hf_checkpoint import _COMMIT_RE, Checkpoint, safetensors_param_count
from mmeval.types import Artifact, Modality, Request, Response

DTYPES = ("float32", "float16", "bfloat16")
GENERATOR_DEVICE = "cpu"
PARALLEL_ENCODE_VALUES = 1 << 18  # array values per sample (a 296x296 RGB image) from which encoding is threaded
COMMON_ARGS = frozenset(
    {"pretrained", "revision", "dtype", "device", "num_inference_steps", "guidance_scale", "negative_prompt", "pipeline"}
)
# Components by card field; everything else that is a model goes to ``modality_generator``.
ENCODER_COMPONENT = re.compile(r"text_encoder(_\d+)?$")
NOT_GENERATOR = re.compile(
    r"(text_encoder(_\d+)?|tokenizer(_\d+)?|scheduler|language_model|projection_model|feature_extractor|safety_checker)$"
)


# --------------------------------------------------------------------------- model args


@dataclass(frozen=True)
class Setting:
    """A numeric model arg and the pipeline ``__call__`` keyword it sets."""

    kw: str
    integer: bool = False
    minimum: float = 0.0
    inclusive: bool = True  # minimum allowed
    multiple: int = 1
    why: str = ""

    def parse(self, owner: str, key: str, text: str) -> float:
        try:
            value: float = int(text) if self.integer else float(text)
        except ValueError:
            raise ModelArgsError(f"{owner}: {key} must be {'an integer' if self.integer else 'a number'}, got {text!r}") from None
        bad = not math.isfinite(value) or value < self.minimum or (value == self.minimum and not self.inclusive)
        if bad or (self.multiple > 1 and value % self.multiple):
            bound = f"{'>=' if self.inclusive else '>'} {self.minimum:g}" + (
                f" and a multiple of {self.multiple}" if self.multiple > 1 else ""
            )
            raise ModelArgsError(f"{owner}: {key} must be finite, {bound}{self.why}, got {text!r}")
        return value


STEPS = Setting("num_inference_steps", integer=True, minimum=1)
GUIDANCE = Setting("guidance_scale", why=" (1 or less turns classifier-free guidance off)")
HEIGHT = Setting("height", integer=True, minimum=8, multiple=8, why=" (as diffusers requires)")
WIDTH = replace(HEIGHT, kw="width")
NUM_FRAMES = Setting("num_frames", integer=True, minimum=1)
AUDIO_LENGTH = Setting("audio_length_in_s", inclusive=False)
FPS = Setting("fps", inclusive=False)


def device_and_dtype(owner: str, args: dict[str, str]) -> tuple[str, str]:
    """(device, dtype): CUDA when present; float16 there (how SD, AudioLDM and Zeroscope are
    released and run), float32 on CPU (where half precision is slow and lossy)."""
    import torch

    device = args.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except RuntimeError:
        raise ModelArgsError(f"{owner}: device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    dtype = args.get("dtype") or ("float16" if device.startswith("cuda") else "float32")
    if dtype not in DTYPES:
        raise ModelArgsError(f"{owner}: dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return device, dtype


# --------------------------------------------------------------------------- checkpoint


class PipelineCheckpoint(Checkpoint):
    """A diffusers pipeline (local dir or hub id): its identity and ``model_index.json``."""

    def model_index(self) -> dict[str, Any]:
        if self.local_dir is not None:
            path = self.local_dir / "model_index.json"
            if not path.is_file():
                raise ModelArgsError(
                    f"{self.owner}: {self.local_dir} has no model_index.json; pretrained must be a diffusers pipeline "
                    "directory (written by save_pretrained) or a hub id"
                )
        else:
            from huggingface_hub import hf_hub_download

            try:
                path = Path(hf_hub_download(self.pretrained, "model_index.json", revision=self.load_revision))
            except Exception as exc:  # offline, unknown repo, gated, no model_index.json: all one answer
                raise ModelArgsError(
                    f"{self.owner}: cannot read model_index.json of {self.pretrained!r} at revision {self.load_revision!r} "
                    f"({type(exc).__name__}: {exc}); give a local pipeline directory or a reachable hub id"
                ) from exc
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelArgsError(f"{self.owner}: cannot read {path}: {exc}") from exc
        if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
            raise ModelArgsError(f"{self.owner}: {path} names no pipeline class (_class_name)")
        return index

    def config(self) -> Any:  # a pipeline has no transformers config
        raise NotImplementedError("use model_index()")

    def loaded(self) -> None:
        if self.local_dir is None and self.commit is None:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(self.pretrained, "model_index.json", revision=self.load_revision)
            if isinstance(path, str) and _COMMIT_RE.fullmatch(Path(path).parent.name):
                self.commit = Path(path).parent.name

    def params(self) -> int | None:
        if self.local_dir is None:
            return None
        counts = [safetensors_param_count(d) for d in sorted(self.local_dir.iterdir()) if d.is_dir()]
        return sum(c for c in counts if c) or None


def pipeline_class(owner: str, name: str) -> Any:
    """The diffusers pipeline class called ``name`` (a ModelArgsError if there is none)."""
    import diffusers

    cls = getattr(diffusers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise ModelArgsError(
            f"{owner}: {name!r} is not a diffusers pipeline class (diffusers {diffusers.__version__}); "
            "set pipeline= to one, e.g. StableDiffusionPipeline, AudioLDMPipeline, TextToVideoSDPipeline"
        )
    return cls


def kebab(name: str) -> str:
    """StableDiffusionPipeline -> stable-diffusion, TextToVideoSDPipeline -> text-to-video-sd."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name.removesuffix("Pipeline")).lower()


def prompt_of(request: Request) -> str:
    if request.media():
        raise ValueError(f"takes text only, the request has {sorted({p.modality for p in request.media()})} input")
    text = "\n".join(m.text() for m in request.messages if m.role == "user").strip()
    if not text:
        raise ValueError("the request has no user text to use as the prompt")
    return text


def to_uint8(x: Any) -> Any:
    import numpy as np

    arr = np.asarray(x)
    return arr if arr.dtype == np.uint8 else (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)


# --------------------------------------------------------------------------- adapters


class DiffusersGenerator(Model):
    """Shared base: model args, checkpoint, lazy pipeline, seeded batched calls. Subclasses set
    the output modality, their extra args and ``encode`` (one sample -> artifact)."""

    name: ClassVar[str] = "diffusers"
    output: ClassVar[Modality] = "image"
    output_field: ClassVar[str] = "images"  # attribute of the pipeline's output
    call_args: ClassVar[dict[str, Setting]] = {}  # model arg -> setting, besides steps and guidance
    defaults: ClassVar[dict[str, str]] = {}  # model args a subclass (tiny builds) presets

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        merged = {**self.defaults, **args}
        self.device, self.dtype_name = device_and_dtype(self.name, merged)
        self.negative_prompt = merged.get("negative_prompt") or None
        settings = {"num_inference_steps": STEPS, "guidance_scale": GUIDANCE, **self.call_args}
        explicit = {s.kw: s.parse(self.name, key, merged[key]) for key, s in settings.items() if key in merged}
        self.parse_args(merged)
        # Last: tiny builds make their checkpoint here, so every cheap check comes first.
        self.ckpt = PipelineCheckpoint(self.name, self._resolve_pretrained(args), args.get("revision", "main"))
        self.model_index = self.ckpt.model_index()
        self.pipeline_cls = pipeline_class(self.name, merged.get("pipeline") or self.default_pipeline(self.model_index["_class_name"]))
        self.call_kwargs = self._call_kwargs(explicit)
        self.card = self.describe()
        self._fingerprint = {
            "dtype": self.dtype_name,
            "pipeline": self.pipeline_cls.__name__,
            "call": self.call_kwargs,
            "negative_prompt": self.negative_prompt,
            "generator_device": GENERATOR_DEVICE,
            **self.encode_settings(),
            **self.ckpt.identity(),
        }
        self.pipe: Any = None

    # ------------------------------------------------------------------ hooks

    def parse_args(self, args: dict[str, str]) -> None:
        """Settings that are not pipeline arguments (video fps)."""

    def _resolve_pretrained(self, args: dict[str, str]) -> str:
        return require_arg(self.name, args, "pretrained", "diffusers pipeline dir or hub id")

    def default_pipeline(self, class_name: str) -> str:
        return class_name

    def encode_settings(self) -> dict[str, Any]:
        return {}

    def encode(self, sample: Any) -> Artifact:
        raise NotImplementedError

    # ------------------------------------------------------------------ identity

    def _call_kwargs(self, explicit: dict[str, Any]) -> dict[str, Any]:
        """Every setting the pipeline takes: given ones (refused if the pipeline has no such
        argument) and its own defaults, so the fingerprint and info record what was run."""
        params = inspect.signature(self.pipeline_cls.__call__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        wanted = {**explicit, **({"negative_prompt": self.negative_prompt} if self.negative_prompt else {})}
        for kw in wanted:
            if kw not in params and not takes_any:
                raise ModelArgsError(f"{self.name}: {self.pipeline_cls.__name__} takes no {kw!r} argument; drop that model arg")
        names = [STEPS.kw, GUIDANCE.kw, *(s.kw for s in self.call_args.values())]
        out = {kw: params[kw].default for kw in names if kw in params and params[kw].default not in (None, inspect.Parameter.empty)}
        out.update(explicit)
        return out

    def describe(self) -> ArchitectureCard:
        components = {k: v for k, v in self.model_index.items() if not k.startswith("_") and isinstance(v, list) and v[-1]}

        def cls_of(keys: Sequence[str]) -> str | None:
            return " + ".join(str(components[k][-1]) for k in keys) or None

        generator = cls_of([k for k in components if not NOT_GENERATOR.match(k)])
        return ArchitectureCard(
            modality_encoder=cls_of([k for k in components if ENCODER_COMPONENT.match(k)]),
            llm_backbone=cls_of([k for k in components if k == "language_model"]),
            output_projector=cls_of([k for k in components if k == "projection_model"]),
            modality_generator=f"{kebab(self.pipeline_cls.__name__)} ({generator})" if generator else kebab(self.pipeline_cls.__name__),
            params=self.ckpt.params(),
        )

    def fingerprint_extra(self) -> Any:
        return self._fingerprint

    def info(self) -> dict[str, Any]:
        import diffusers
        import torch

        pipe = self.pipe
        scheduler = type(pipe.scheduler).__name__ if pipe is not None else (self.model_index.get("scheduler") or [None])[-1]
        return {
            **self.ckpt.info(),
            "pipeline_class": type(pipe).__name__ if pipe is not None else self.pipeline_cls.__name__,
            "scheduler_class": scheduler,
            **self.call_kwargs,
            "negative_prompt": self.negative_prompt,
            **self.encode_settings(),
            "dtype": self.dtype_name,
            "device": self.device,
            "generator_device": GENERATOR_DEVICE,
            "safety_checker": bool((self.model_index.get("safety_checker") or [None])[-1]),
            "weights_loaded": pipe is not None,
            "diffusers_version": diffusers.__version__,
            "torch_version": torch.__version__,
        }

    # ------------------------------------------------------------------ loading and generation

    def _ensure_loaded(self) -> Any:
        if self.pipe is None:
            from diffusers.utils import is_accelerate_available
            from diffusers.utils import logging as diffusers_logging

            diffusers_logging.disable_progress_bar()
            # Without accelerate diffusers loads the ordinary way anyway, after a notice saying so.
            memory = {} if is_accelerate_available() else {"low_cpu_mem_usage": False}
            pipe = self.pipeline_cls.from_pretrained(self.ckpt.source, dtype=torch_dtype(self.dtype_name), **memory, **self.ckpt.kwargs())
            pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self.ckpt.loaded()
            modules = [m for m in pipe.components.values() if hasattr(m, "parameters")]
            self.card = replace(self.card, params=sum(p.numel() for m in modules for p in m.parameters()))
            self.pipe = pipe
        return self.pipe

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe = None
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        prompts: list[tuple[Request, str]] = []
        failed: dict[str, Response] = {}
        for req in requests:
            try:
                prompts.append((req, prompt_of(req)))
            except ValueError as exc:
                failed[req.id] = Response.failed(req.id, f"{self.name}: {exc}")
        done = self._run(prompts) if prompts else {}
        return [failed.get(r.id) or done[r.id] for r in requests]

    def _run(self, items: Sequence[tuple[Request, str]]) -> dict[str, Response]:
        """One pipeline call for the batch; one CPU generator per sample."""
        import numpy as np
        import torch

        pipe = self._ensure_loaded()
        seeds = [sample_seed(req) for req, _ in items]
        kwargs: dict[str, Any] = {
            **self.call_kwargs,
            "prompt": [text for _, text in items],
            "generator": [torch.Generator(GENERATOR_DEVICE).manual_seed(s) for s in seeds],
            "output_type": "np",
        }
        if self.negative_prompt:
            kwargs["negative_prompt"] = [self.negative_prompt] * len(items)
        start = time.perf_counter()
        out = pipe(**kwargs)
        samples = [np.asarray(s) for s in getattr(out, self.output_field)]
        if len(samples) != len(items):
            raise RuntimeError(f"{type(pipe).__name__} returned {len(samples)} {self.output_field} for {len(items)} prompts")
        artifacts = self._encode_all(samples)
        share = (time.perf_counter() - start) / len(items)
        nsfw = getattr(out, "nsfw_content_detected", None)
        return {
            req.id: Response(
                id=req.id,
                artifacts=[art],
                finish_reason="stop",
                timings={"generate_s": share},
                meta={"seed": seed, **({"nsfw_content_detected": bool(nsfw[i])} if nsfw is not None else {})},
            )
            for i, ((req, _), seed, art) in enumerate(zip(items, seeds, artifacts, strict=True))
        }

    def _encode_all(self, samples: list[Any]) -> list[Artifact]:
        """Encode a batch's samples in threads when they are large: PNG/APNG compression
        releases the GIL, and at 512x512 it is a visible share of a fast GPU generator's time
        per image. Small samples encode faster than a thread pool starts."""
        workers = min(len(samples), os.cpu_count() or 1, 8)
        if workers <= 1 or samples[0].size < PARALLEL_ENCODE_VALUES:
            return [self.encode(s) for s in samples]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.encode, samples))

    def _shape_error(self, sample: Any, expected: str) -> ValueError:
        return ValueError(
            f"{self.name}: {self.pipeline_cls.__name__} returned {self.output_field} of shape {sample.shape}, expected {expected}; "
            f"is {self.ckpt.pretrained!r} a text-to-{self.output} pipeline?"
        )


class DiffusersImage(DiffusersGenerator):
    """Text -> image (Stable Diffusion and the other text-to-image pipelines); PNG artifacts."""

    name: ClassVar[str] = "diffusers-image"
    capabilities: ClassVar[Capabilities] = Capabilities(frozenset({"text"}), frozenset({"image"}), batchable=True)
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS | {"height", "width"}
    call_args: ClassVar[dict[str, Setting]] = {"height": HEIGHT, "width": WIDTH}

    def default_pipeline(self, class_name: str) -> str:
        """An img2img / inpainting checkpoint loads as its family's text-to-image pipeline."""
        from diffusers.pipelines import auto_pipeline as auto

        for mapping in (auto.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, auto.AUTO_INPAINT_PIPELINES_MAPPING):
            for family, cls in mapping.items():
                if cls.__name__ == class_name and family in auto.AUTO_TEXT2IMAGE_PIPELINES_MAPPING:
                    return auto.AUTO_TEXT2IMAGE_PIPELINES_MAPPING[family].__name__
        return class_name

    def encode(self, sample: Any) -> Artifact:
        from PIL import Image

        if sample.ndim != 3 or sample.shape[-1] != 3:
            raise self._shape_error(sample, "(height, width, 3)")
        buf = io.BytesIO()
        Image.fromarray(to_uint8(sample), "RGB").save(buf, format="PNG")
        return Artifact.from_bytes("image", buf.getvalue(), "png", width=int(sample.shape[1]), height=int(sample.shape[0]))


class DiffusersAudio(DiffusersGenerator):
    """Text -> audio (AudioLDM, AudioLDM 2 and the other text-to-audio pipelines); 16-bit WAV,
    at the vocoder's (or autoencoder's) sampling rate, channels averaged to mono."""

    name: ClassVar[str] = "diffusers-audio"
    output: ClassVar[Modality] = "audio"
    output_field: ClassVar[str] = "audios"
    capabilities: ClassVar[Capabilities] = Capabilities(frozenset({"text"}), frozenset({"audio"}), batchable=True)
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS | {"audio_length_s"}
    call_args: ClassVar[dict[str, Setting]] = {"audio_length_s": AUDIO_LENGTH}

    def sample_rate(self) -> int:
        for component in ("vocoder", "vae"):
            config = getattr(getattr(self.pipe, component, None), "config", None)
            rate = getattr(config, "sampling_rate", None) if config is not None else None
            if rate:
                return int(rate)
        raise ValueError(f"{self.name}: cannot tell the sampling rate of {type(self.pipe).__name__} (no vocoder or vae sampling_rate)")

    def encode(self, sample: Any) -> Artifact:
        from mmeval.media.audio import encode_wav

        if sample.ndim == 2:
            sample = sample.mean(axis=0)
        if sample.ndim != 1 or sample.size == 0:
            raise self._shape_error(sample, "(samples,) or (channels, samples)")
        rate = self.sample_rate()
        return Artifact.from_bytes("audio", encode_wav(sample, rate), "wav", sample_rate=rate, seconds=sample.size / rate)

    def info(self) -> dict[str, Any]:
        return {**super().info(), **({"sample_rate": self.sample_rate()} if self.pipe is not None else {})}


class DiffusersVideo(DiffusersGenerator):
    """Text -> video (Zeroscope / ModelScope ``TextToVideoSDPipeline`` and other text-to-video
    pipelines); lossless APNG at ``fps`` (default 8, Zeroscope's)."""

    name: ClassVar[str] = "diffusers-video"
    output: ClassVar[Modality] = "video"
    output_field: ClassVar[str] = "frames"
    capabilities: ClassVar[Capabilities] = Capabilities(frozenset({"text"}), frozenset({"video"}), batchable=True)
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS | {"height", "width", "num_frames", "fps"}
    call_args: ClassVar[dict[str, Setting]] = {"height": HEIGHT, "width": WIDTH, "num_frames": NUM_FRAMES}
    default_fps: ClassVar[float] = 8.0

    def parse_args(self, args: dict[str, str]) -> None:
        self.fps = FPS.parse(self.name, "fps", args["fps"]) if "fps" in args else self.default_fps

    def encode_settings(self) -> dict[str, Any]:
        return {"fps": self.fps}

    def encode(self, sample: Any) -> Artifact:
        from mmeval.media.video import encode_apng

        if sample.ndim != 4 or sample.shape[-1] != 3:
            raise self._shape_error(sample, "(frames, height, width, 3)")
        frames = to_uint8(sample)
        t, h, w, _ = frames.shape
        return Artifact.from_bytes("video", encode_apng(frames, self.fps), "apng", fps=self.fps, frames=int(t), width=int(w), height=int(h))


__all__ = ["DiffusersAudio", "DiffusersGenerator", "DiffusersImage", "DiffusersVideo", "PipelineCheckpoint"]
