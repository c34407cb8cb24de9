"""The Model protocol, capabilities, architecture cards and the adapter registry.

Adapters are registered by name -> "module:Class" strings so that nothing heavy (torch,
transformers) is imported until a model is actually built. Third-party adapters register
through the ``mmeval.models`` entry-point group:

    [project.entry-points."mmeval.models"]
    my-model = "my_pkg.adapter:MyModel"
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from mmeval.types import MediaError, Modality, Request, Response


class ModelArgsError(ValueError):
    """Bad --model-args for an adapter."""


@dataclass(frozen=True)
class Capabilities:
    input_modalities: frozenset[Modality] = frozenset({"text"})
    output_modalities: frozenset[Modality] = frozenset({"text"})
    batchable: bool = True
    max_images: int | None = None
    loglikelihood: bool = False

    def refuses(self, inputs: set[Modality], output: Modality) -> str | None:
        """Why this model cannot serve requests with these modalities, or None if it can."""
        missing = sorted(set(inputs) - set(self.input_modalities))
        if missing:
            return f"takes {sorted(self.input_modalities)} as input, the task needs {missing}"
        if output not in self.output_modalities:
            return f"produces {sorted(self.output_modalities)}, the task expects {output}"
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_modalities"] = sorted(self.input_modalities)
        d["output_modalities"] = sorted(self.output_modalities)
        return d


@dataclass(frozen=True)
class ArchitectureCard:
    """The five-part MLLM architecture (encoder -> input projector -> LLM -> output projector
    -> generator), so leaderboards can group results by component."""

    modality_encoder: str | None = None
    input_projector: str | None = None  # linear | mlp | q-former | resampler | cross-attention
    llm_backbone: str | None = None
    output_projector: str | None = None
    modality_generator: str | None = None
    params: int | None = None
    license: str | None = None
    open_weights: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_model_args(text: str | None, option: str = "--model-args", example: str = "pretrained=DIR,dtype=float32") -> dict[str, str]:
    """Parse lm-eval style ``k=v,k2=v2``. Values may contain '=' but not ','. ``option`` and
    ``example`` name the flag in error messages (``--metric-args`` uses the same syntax)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ModelArgsError(f"{option} item {item!r} is not key=value (expected e.g. '{example}')")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


_SECRET_NAME = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?|auth|authorization)$", re.I)


def redact_args(args: dict[str, str]) -> dict[str, str]:
    """Model args as recorded in run.json: values of secret-shaped names (api_key, hf_token,
    password...) are masked. Adapters take secrets from environment variables only; this
    guards against a user passing one anyway. ``api_key_env`` (a variable's name) and field
    names such as replay's ``id_key`` are kept."""
    return {k: "***redacted***" if _SECRET_NAME.search(k) and k not in _FIELD_NAMES else v for k, v in args.items()}


_FIELD_NAMES = frozenset({"id_key", "response_key"})


def args_label(name: str, args: dict[str, str]) -> str:
    """How tables, leaderboards and sweeps name a model: ``name (k=v, ...)``, args sorted."""
    return name + (f" ({', '.join(f'{k}={v}' for k, v in sorted(args.items()))})" if args else "")


def as_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise ModelArgsError(f"expected a boolean (true/false), got {value!r}")


class Model:
    """Base class for adapters. Subclasses set ``name``, ``capabilities`` and ``card``, accept
    their model args as keyword strings in ``__init__`` and implement ``generate``.

    ``capabilities_for(args)`` is a classmethod so the runner can refuse a task/model pair
    before any weights are loaded.
    """

    name: ClassVar[str] = "model"
    capabilities: ClassVar[Capabilities] = Capabilities()
    card: ArchitectureCard = ArchitectureCard()
    allowed_args: ClassVar[frozenset[str]] = frozenset()
    # The model's official evaluation prompt style, by name and version ("llava-1.5", "blip2");
    # a task with a prompt variant of that name uses it (tasks never branch on model names).
    prompt_protocol: ClassVar[str | None] = None
    prompt_protocol_version: ClassVar[int] = 1

    def __init__(self, **args: str) -> None:
        self.check_args(args)
        self.args = dict(args)

    @classmethod
    def check_args(cls, args: dict[str, str]) -> None:
        """Refuse unknown args before anything is built or written (a mistyped key name would
        otherwise reach run.json)."""
        unknown = sorted(set(args) - set(cls.allowed_args))
        if unknown:
            raise ModelArgsError(f"model {cls.name!r} does not take model args {unknown}; it takes {sorted(cls.allowed_args) or 'none'}")

    @classmethod
    def capabilities_for(cls, args: dict[str, str]) -> Capabilities:
        return cls.capabilities

    def fingerprint(self) -> str:
        """Identifies the exact model + settings that determine its outputs (cache key part)."""
        payload = {"name": self.name, "args": self.args, "extra": self.fingerprint_extra()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def fingerprint_extra(self) -> Any:
        return None

    def info(self) -> dict[str, Any]:
        """What run.json records about the model (revision, dtype, device, prompt protocol...)."""
        return {}

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (worker processes, GPU memory)."""


def prepare_each(requests: Sequence[Request], prepare: Callable[[Request], Any]) -> tuple[list[tuple[Request, Any]], dict[str, Response]]:
    """Run ``prepare`` per request; a MediaError fails only that request.

    Returns the prepared (request, value) pairs and the failed responses by request id.
    """
    ok: list[tuple[Request, Any]] = []
    failed: dict[str, Response] = {}
    for req in requests:
        try:
            ok.append((req, prepare(req)))
        except MediaError as exc:
            failed[req.id] = Response.failed(req.id, f"media: {exc}")
    return ok, failed


def sample_seed(request: Request) -> int:
    """A per-sample seed from (generation seed, request id): the same sample gets the same noise
    whatever the batch it lands in, and different samples get different noise."""
    digest = hashlib.sha256(f"{request.generation.seed}:{request.id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


# --------------------------------------------------------------------------- registry

BUILTIN_MODELS: dict[str, str] = {
    "constant": "mmeval.models.baselines:ConstantModel",
    "random-choice": "mmeval.models.baselines:RandomChoiceModel",
    "replay": "mmeval.models.baselines:ReplayModel",
    "hf-llava": "mmeval.models.hf_llava:HfLlava",
    "tiny-llava": "mmeval.models.tiny:TinyLlava",
    "hf-blip2": "mmeval.models.hf_blip2:HfBlip2",
    "hf-idefics": "mmeval.models.hf_idefics:HfIdefics",
    "hf-qwen2-vl": "mmeval.models.hf_qwen2_vl:HfQwen2VL",
    "hf-qwen2-audio": "mmeval.models.hf_qwen2_audio:HfQwen2Audio",
    "hf-whisper": "mmeval.models.hf_whisper:HfWhisper",
    "whisper+llm": "mmeval.models.cascade:WhisperLLMCascade",
    "openai-chat": "mmeval.models.api_openai:OpenAIChat",
    "anthropic": "mmeval.models.api_anthropic:AnthropicMessages",
    "vllm": "mmeval.models.vllm_engine:VLLMModel",
    # generators (text -> image / audio / video) and any-to-any systems
    "diffusers-image": "mmeval.models.diffusers_gen:DiffusersImage",
    "diffusers-audio": "mmeval.models.diffusers_gen:DiffusersAudio",
    "diffusers-video": "mmeval.models.diffusers_gen:DiffusersVideo",
    "tiny-sd": "mmeval.models.tiny_diffusers:TinyStableDiffusion",
    "tiny-audioldm": "mmeval.models.tiny_diffusers:TinyAudioLDM",
    "tiny-t2v": "mmeval.models.tiny_diffusers:TinyTextToVideo",
    "synth-audio": "mmeval.models.synth:SynthAudio",
    "cascade": "mmeval.models.cascade_gen:TextThenGenerate",
    "nextgpt": "mmeval.models.workers.nextgpt:NextGPT",
    "minigpt4": "mmeval.models.workers.minigpt4:MiniGPT4",
    "openflamingo": "mmeval.models.workers.openflamingo:OpenFlamingo",
}


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class ModelEntry:
    name: str
    target: str
    source: str = "builtin"
    _cls: type[Model] | None = field(default=None, repr=False)

    def load(self) -> type[Model]:
        if self._cls is None:
            module, _, attr = self.target.partition(":")
            self._cls = getattr(importlib.import_module(module), attr)
        return self._cls


def model_registry() -> dict[str, ModelEntry]:
    reg = {name: ModelEntry(name, target) for name, target in BUILTIN_MODELS.items()}
    for ep in entry_points(group="mmeval.models"):
        if ep.name not in reg:  # built-ins win; a plugin cannot shadow them silently
            reg[ep.name] = ModelEntry(ep.name, ep.value, source=ep.dist.name if ep.dist else "plugin")
    return reg


def get_model_class(name: str) -> type[Model]:
    reg = model_registry()
    if name not in reg:
        close = difflib.get_close_matches(name, list(reg), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(reg))}")
    return reg[name].load()


def build_model(name: str, args: dict[str, str]) -> Model:
    return get_model_class(name)(**args)
