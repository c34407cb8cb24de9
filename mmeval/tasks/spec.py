"""TaskSpec: the validated form of a task YAML file.

Validation errors name the file and the field (``tasks/demo_vqa.yaml: prompt[1].text: ...``)
so a user can fix a malformed task without reading mmeval's source.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmeval.types import GenerationConfig, Modality

MEDIA_KEYS: tuple[Modality, ...] = ("image", "audio", "video")
KNOWN_KEYS = {
    "task",
    "version",
    "group",
    "description",
    "dataset",
    "doc_id",
    "prompt",
    "system",
    "target",
    "breakdown",
    "choices",
    "generation",
    "parse",
    "metrics",
    "cluster_by",
    "output_modality",
    "limit_default",
    "tags",
    "prompts",
}
DATASET_KEYS = {"path", "name", "split", "revision", "data_files", "fixture", "media_root", "trust_remote_code", "filter"}
GENERATION_KEYS = {"max_new_tokens", "temperature", "top_p", "seed", "stop"}


class TaskSpecError(ValueError):
    """A malformed task definition. The message starts with ``<file>: <field>:``."""


@dataclass(frozen=True)
class PromptPart:
    kind: str  # "text" or a media modality
    value: str  # jinja2 template for text; column name for media


@dataclass(frozen=True)
class DatasetSpec:
    path: str | None = None
    name: str | None = None
    split: str | None = None
    revision: str | None = None
    data_files: Any = None
    fixture: str | None = None
    media_root: str | None = None
    filter: dict[str, Any] | None = None  # keep rows whose columns equal these values (before --limit)

    @property
    def is_hub(self) -> bool:
        return self.fixture is None and self.path is not None and not _looks_local(self.path)


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).suffix in {".jsonl", ".json", ".parquet", ".csv"}


@dataclass(frozen=True)
class NamedConfig:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    task: str
    version: int
    dataset: DatasetSpec
    doc_id: str
    prompt: tuple[PromptPart, ...]  # the default prompt
    target: str
    metrics: tuple[NamedConfig, ...]
    group: tuple[str, ...] = ()
    description: str = ""
    system: str | None = None
    # Options of a multiple-choice question: a column holding a list (or its string repr), or
    # a list of columns, one option each (empty cells skipped). Labels are A, B, C, ...
    choices: str | tuple[str, ...] | None = None
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    parse: NamedConfig = field(default_factory=lambda: NamedConfig("text"))
    cluster_by: str | None = None
    # Per-value metric rows: (name, template) pairs; a plain column ``c`` is ("c", "{{ c }}").
    breakdown: tuple[tuple[str, str], ...] = ()
    # Prompt variants by model prompt protocol ("blip2": "Question: {} Short answer:"); a model
    # whose protocol has no variant here gets ``prompt``.
    prompts: dict[str, tuple[PromptPart, ...]] = field(default_factory=dict)
    output_modality: Modality = "text"
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def input_modalities(self) -> set[Modality]:
        mods: set[Modality] = {"text"}
        for parts in (self.prompt, *self.prompts.values()):
            for p in parts:
                if p.kind != "text":
                    mods.add(p.kind)  # type: ignore[arg-type]
        return mods

    def prompt_for(self, protocol: str | None) -> tuple[str, tuple[PromptPart, ...]]:
        """(variant name, parts) for a model's prompt protocol: its variant, else the default."""
        if protocol and protocol in self.prompts:
            return protocol, self.prompts[protocol]
        return "default", self.prompt

    @property
    def content_hash(self) -> str:
        """Hash of the task definition as written (recorded in run.json)."""
        text = yaml.safe_dump(self.raw, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()


def _err(source: Path | str, where: str, msg: str) -> TaskSpecError:
    return TaskSpecError(f"{source}: {where}: {msg}")


def _named(value: Any, source: Path | str, where: str) -> NamedConfig:
    if isinstance(value, str):
        return NamedConfig(value)
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        kw = {k: v for k, v in value.items() if k != "name"}
        return NamedConfig(value["name"], kw)
    raise _err(source, where, f"expected a name or a mapping with 'name', got {value!r}")


def _require(raw: dict[str, Any], key: str, typ: type | tuple[type, ...], source: Path | str) -> Any:
    if key not in raw:
        raise _err(source, key, "required field is missing")
    value = raw[key]
    if not isinstance(value, typ):
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise _err(source, key, f"expected {want}, got {type(value).__name__} ({value!r})")
    return value


def parse_spec(raw: Any, source: Path | str = "<string>") -> TaskSpec:
    if not isinstance(raw, dict):
        raise _err(source, "<top level>", f"a task file must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise _err(source, unknown[0], f"unknown field; known fields are {sorted(KNOWN_KEYS)}")
    name = _require(raw, "task", str, source)
    version = _require(raw, "version", int, source)

    ds_raw = _require(raw, "dataset", dict, source)
    bad = sorted(set(ds_raw) - DATASET_KEYS)
    if bad:
        raise _err(source, f"dataset.{bad[0]}", f"unknown field; known fields are {sorted(DATASET_KEYS)}")
    if not ds_raw.get("path") and not ds_raw.get("fixture"):
        raise _err(source, "dataset", "needs 'path' (hub id or local file/folder) or 'fixture'")
    if ds_raw.get("filter") is not None and not isinstance(ds_raw["filter"], dict):
        raise _err(source, "dataset.filter", f"expected a mapping of column: value, got {ds_raw['filter']!r}")
    dataset = DatasetSpec(**{k: v for k, v in ds_raw.items() if k != "trust_remote_code"})
    if dataset.is_hub and not dataset.revision:
        raise _err(source, "dataset.revision", "hub datasets must pin a revision (a commit sha or tag)")

    parts = _prompt_parts(_require(raw, "prompt", list, source), source, "prompt")
    variants_raw = raw.get("prompts") or {}
    if not isinstance(variants_raw, dict):
        raise _err(source, "prompts", f"expected a mapping of prompt protocol -> parts, got {variants_raw!r}")
    variants = {str(k): _prompt_parts(v, source, f"prompts.{k}") for k, v in variants_raw.items()}

    gen_raw = raw.get("generation") or {}
    if not isinstance(gen_raw, dict):
        raise _err(source, "generation", f"expected a mapping, got {gen_raw!r}")
    bad = sorted(set(gen_raw) - GENERATION_KEYS)
    if bad:
        raise _err(source, f"generation.{bad[0]}", f"unknown field; known fields are {sorted(GENERATION_KEYS)}")
    stop = gen_raw.get("stop") or ()
    try:
        generation = GenerationConfig(
            max_new_tokens=int(gen_raw.get("max_new_tokens", 64)),
            temperature=float(gen_raw.get("temperature", 0.0)),
            top_p=float(gen_raw.get("top_p", 1.0)),
            seed=int(gen_raw.get("seed", 0)),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
        )
    except (TypeError, ValueError) as exc:
        raise _err(source, "generation", str(exc)) from exc

    metrics_raw = _require(raw, "metrics", list, source)
    if not metrics_raw:
        raise _err(source, "metrics", "needs at least one metric")
    metrics = tuple(_named(m, source, f"metrics[{i}]") for i, m in enumerate(metrics_raw))

    group = raw.get("group") or ()
    if isinstance(group, str):
        group = (group,)
    breakdown = _breakdown(raw.get("breakdown") or (), source)
    output = raw.get("output_modality", "text")
    if output not in ("text", *MEDIA_KEYS):
        raise _err(source, "output_modality", f"must be text, image, audio or video, got {output!r}")
    target = _require(raw, "target", str, source)
    choices = raw.get("choices")
    if isinstance(choices, list):
        if not choices or not all(isinstance(c, str) for c in choices):
            raise _err(source, "choices", f"expected a column name or a list of column names, got {choices!r}")
        choices = tuple(choices)
    elif choices is not None and not isinstance(choices, str):
        raise _err(source, "choices", f"expected a column name or a list of column names, got {choices!r}")
    for key in ("doc_id", "cluster_by", "system", "description"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise _err(source, key, f"expected a string, got {raw[key]!r}")
    if raw.get("system"):
        _check_template(raw["system"], source, "system")

    return TaskSpec(
        task=name,
        version=version,
        dataset=dataset,
        doc_id=raw.get("doc_id") or "",
        prompt=parts,
        prompts=variants,
        target=target,
        metrics=metrics,
        group=tuple(group),
        description=raw.get("description", "") or "",
        system=raw.get("system"),
        choices=choices,
        generation=generation,
        parse=_named(raw.get("parse", "text"), source, "parse"),
        cluster_by=raw.get("cluster_by"),
        breakdown=tuple(breakdown),
        output_modality=output,
        source=None if source == "<string>" else Path(source),
        raw=raw,
    )


def _prompt_parts(items: Any, source: Path | str, where_base: str) -> tuple[PromptPart, ...]:
    if not isinstance(items, list):
        raise _err(source, where_base, f"expected a list of parts, got {items!r}")
    parts: list[PromptPart] = []
    for i, item in enumerate(items):
        where = f"{where_base}[{i}]"
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict) or len(item) != 1:
            raise _err(
                source,
                where,
                f"each part is one of {{text: TEMPLATE}}, {{image: COLUMN}}, {{audio: COLUMN}}, {{video: COLUMN}}; got {item!r}",
            )
        ((kind, value),) = item.items()
        if kind not in ("text", *MEDIA_KEYS):
            raise _err(source, f"{where}.{kind}", "unknown part type; use text, image, audio or video")
        if not isinstance(value, str):
            raise _err(source, f"{where}.{kind}", f"expected a string, got {value!r}")
        if kind == "text":
            _check_template(value, source, f"{where}.text")
        parts.append(PromptPart(kind, value))
    if not parts:
        raise _err(source, where_base, "needs at least one part")
    return tuple(parts)


def _breakdown(value: Any, source: Path | str) -> tuple[tuple[str, str], ...]:
    """``breakdown: [answer_type, {subject: "{{ id.split('_')[1] }}"}]`` -> (name, template) pairs."""
    items = [value] if isinstance(value, (str, dict)) else value
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((item, "{{ " + item + " }}" if item.isidentifier() else "{{ doc[" + repr(item) + "] }}"))
        elif isinstance(item, dict) and len(item) == 1 and all(isinstance(x, str) for x in next(iter(item.items()))):
            ((name, template),) = item.items()
            _check_template(template, source, f"breakdown[{i}].{name}")
            out.append((name, template))
        else:
            raise _err(source, f"breakdown[{i}]", f"expected a column name or {{name: template}}, got {item!r}")
    return tuple(out)


def _check_template(text: str, source: Path | str, where: str) -> None:
    from jinja2 import TemplateSyntaxError

    from mmeval.tasks.prompts import ENV

    try:
        ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise _err(source, where, f"template syntax error on line {exc.lineno}: {exc.message}") from exc


def load_spec_file(path: str | Path) -> TaskSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskSpecError(f"{p}: cannot read task file: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)  # safe_load: no arbitrary object construction from YAML tags
    except yaml.YAMLError as exc:
        raise TaskSpecError(f"{p}: {yaml_problem(exc, 'task')}") from exc
    return parse_spec(raw, p.resolve())


# PyYAML's safe loader names the tag it refused: "could not determine a constructor for the tag '...'".
_REFUSED_TAG = re.compile(r"constructor for the tag '([^']*)'")


def yaml_problem(exc: yaml.YAMLError, kind: str) -> str:
    """``line L, column C: what is wrong`` for a YAML error, on one line (PyYAML's own message
    adds a multi-line excerpt). A tag safe_load refused (``!!python/object/apply:os.system``:
    an attempt to build a Python object or run code) gets a message saying so, not a parser
    error a user might try to work around."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<yaml>"
    problem = str(getattr(exc, "problem", None) or exc)
    refused = _REFUSED_TAG.search(problem) if isinstance(exc, yaml.constructor.ConstructorError) else None
    if refused is None:
        return f"{where}: invalid YAML: {problem}"
    tag = refused.group(1).replace("tag:yaml.org,2002:", "!!")
    return (
        f"{where}: invalid YAML: tag {tag!r} is not allowed. {kind.capitalize()} files are plain data "
        "(mappings, lists, strings, numbers) read with yaml.safe_load, which never constructs Python objects "
        "or runs code; remove the tag"
    )
