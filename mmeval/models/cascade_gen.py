"""``cascade``: a text-producing adapter writes the description, a generator adapter renders it.

This is the standard baseline for any-to-any models (NExT-GPT's own comparison: an MLLM
followed by Stable Diffusion / AudioLDM / Zeroscope), built from any two registered adapters:

    mmeval run --model cascade --tasks coco_t2i_5k --model-args \\
        text=hf-llava,text.pretrained=llava-hf/llava-1.5-7b-hf,\\
        generator=diffusers-image,generator.pretrained=stable-diffusion-v1-5/stable-diffusion-v1-5

Arguments ``text.<k>`` / ``generator.<k>`` go to the two adapters (each validates its own).
For a request that expects media, the text model gets the request's messages (images, audio...
included) plus ``instruction`` (default: write a one-sentence description of the <modality>
to generate, and nothing else); its answer, stripped, is the generator's prompt. With
``rewrite=false`` the request's own text goes to the generator unchanged (the generator alone,
through the same code path). A request that expects text goes to the text model alone.

The response keeps both halves: ``text`` is what the text model wrote, ``artifacts`` what the
generator made, ``meta`` records the generator prompt, so a bad image can be traced to a bad
description or to the generator.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from mmeval.models.base import ArchitectureCard, Capabilities, Model, ModelArgsError, as_bool, build_model, get_model_class
from mmeval.types import Message, Request, Response, TextPart

DEFAULT_INSTRUCTION = (
    "Write a one-sentence description of the {modality} that answers the request above, to be given to a "
    "{modality} generator. Reply with the description only."
)
OWN_ARGS = frozenset({"text", "generator", "instruction", "rewrite"})


def split_args(args: dict[str, str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    own, text, gen = {}, {}, {}
    for k, v in args.items():
        if k.startswith("text."):
            text[k.removeprefix("text.")] = v
        elif k.startswith("generator."):
            gen[k.removeprefix("generator.")] = v
        else:
            own[k] = v
    return own, text, gen


class TextThenGenerate(Model):
    name: ClassVar[str] = "cascade"
    card = ArchitectureCard(output_projector="text prompt (cascade)")  # an instance's card combines its two adapters'

    @classmethod
    def check_args(cls, args: dict[str, str]) -> None:
        own, text, gen = split_args(args)
        unknown = sorted(set(own) - OWN_ARGS)
        if unknown:
            raise ModelArgsError(
                f"cascade does not take model args {unknown}; it takes text=, generator=, instruction=, rewrite=, "
                "and text.<arg>= / generator.<arg>= for the two adapters"
            )
        for role, sub in (("text", text), ("generator", gen)):
            name = own.get(role)
            if not name:
                raise ModelArgsError(f"cascade needs {role}=<adapter name> (see `mmeval models`)")
            if name == cls.name:
                raise ModelArgsError("cascade cannot contain another cascade")
            try:
                get_model_class(name).check_args(sub)
            except ModelArgsError as exc:
                raise ModelArgsError(f"cascade {role}={name}: {exc}") from exc

    @classmethod
    def capabilities_for(cls, args: dict[str, str]) -> Capabilities:
        own, text, gen = split_args(args)
        tcaps = get_model_class(own["text"]).capabilities_for(text)
        gcaps = get_model_class(own["generator"]).capabilities_for(gen)
        if "text" not in tcaps.output_modalities:
            raise ModelArgsError(f"cascade text={own['text']} produces no text")
        if "text" not in gcaps.input_modalities:
            raise ModelArgsError(f"cascade generator={own['generator']} takes no text prompt")
        return Capabilities(
            input_modalities=tcaps.input_modalities,
            output_modalities=frozenset({"text"}) | gcaps.output_modalities,
            batchable=tcaps.batchable and gcaps.batchable,
            max_images=tcaps.max_images,
        )

    def __init__(self, **args: str) -> None:
        self.check_args(args)
        self.args = dict(args)
        own, text_args, gen_args = split_args(args)
        self.capabilities = self.capabilities_for(args)  # type: ignore[misc]
        self.text_model = build_model(own["text"], text_args)
        self.generator = build_model(own["generator"], gen_args)
        self.prompt_protocol = self.text_model.prompt_protocol  # type: ignore[misc]
        self.card = self.combined_card()
        self.instruction = own.get("instruction", DEFAULT_INSTRUCTION)
        try:
            self.rewrite = as_bool(own.get("rewrite", "true"))
        except ModelArgsError as exc:
            raise ModelArgsError(f"cascade rewrite: {exc}") from None

    def combined_card(self) -> ArchitectureCard:
        t, g = self.text_model.card, self.generator.card
        params = (t.params or 0) + (g.params or 0) if (t.params is not None or g.params is not None) else None
        return ArchitectureCard(
            modality_encoder=t.modality_encoder,
            input_projector=t.input_projector,
            llm_backbone=t.llm_backbone,
            output_projector="text prompt (cascade)",
            modality_generator=g.modality_generator,
            params=params,
            license=" + ".join(x for x in (t.license, g.license) if x) or None,
            open_weights=None if t.open_weights is None or g.open_weights is None else t.open_weights and g.open_weights,
        )

    def fingerprint(self) -> str:
        parts = [self.name, self.text_model.fingerprint(), self.generator.fingerprint(), self.instruction, str(self.rewrite)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def info(self) -> dict[str, Any]:
        return {
            "text": {"name": self.text_model.name, **self.text_model.info()},
            "generator": {"name": self.generator.name, **self.generator.info()},
            "rewrite": self.rewrite,
            "instruction": self.instruction if self.rewrite else None,
        }

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        out: dict[str, Response] = {}
        text_only = [r for r in requests if r.output_modality == "text"]
        media = [r for r in requests if r.output_modality != "text"]
        if text_only:
            out.update({r.id: r for r in self.text_model.generate(text_only)})
        if media:
            out.update(self._generate_media(media))
        return [out.get(r.id) or Response.failed(r.id, "cascade: no response for this request") for r in requests]

    def _generate_media(self, requests: list[Request]) -> dict[str, Response]:
        t0 = time.perf_counter()
        if self.rewrite:
            asks = [self._description_request(r) for r in requests]
            described = {r.id: r for r in self.text_model.generate(asks)}
        else:
            described = {r.id: Response(id=r.id, text=r.prompt_text()) for r in requests}
        t_text = time.perf_counter() - t0
        done: dict[str, Response] = {}
        gen_requests = []
        for req in requests:
            d = described.get(req.id) or Response.failed(req.id, "no response")
            if not d.ok:
                done[req.id] = Response.failed(req.id, f"cascade text model: {d.error}")
            elif not d.text.strip():
                done[req.id] = Response.failed(req.id, "cascade text model: returned an empty description")
            else:
                msg = Message("user", (TextPart(d.text.strip()),))
                gen_requests.append(Request(id=req.id, messages=(msg,), generation=req.generation, output_modality=req.output_modality))
        generated = {r.id: r for r in self.generator.generate(gen_requests)} if gen_requests else {}
        for greq in gen_requests:
            g = generated.get(greq.id) or Response.failed(greq.id, "no response")
            prompt = greq.prompt_text()
            if not g.ok:
                done[greq.id] = Response.failed(greq.id, f"cascade generator: {g.error}")
                continue
            done[greq.id] = replace(
                g,
                text=described[greq.id].text.strip() if self.rewrite else g.text,
                meta={**g.meta, "generator_prompt": prompt},
                timings={**g.timings, "text_s": t_text / len(requests)},
            )
        return done

    def _description_request(self, req: Request) -> Request:
        instruction = self.instruction.replace("{modality}", req.output_modality)
        msgs = list(req.messages)
        if msgs and msgs[-1].role == "user":
            msgs[-1] = Message("user", (*msgs[-1].parts, TextPart("\n" + instruction)))
        else:
            msgs.append(Message("user", (TextPart(instruction),)))
        return Request(id=req.id, messages=tuple(msgs), generation=req.generation, output_modality="text", choices=None)

    def close(self) -> None:
        self.text_model.close()
        self.generator.close()
