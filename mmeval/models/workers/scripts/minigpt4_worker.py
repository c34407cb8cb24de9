"""MiniGPT-4 worker: runs in MiniGPT-4's own environment (environment.yml: torch 2.0, transformers 4.30).

Written against github.com/Vision-CAIR/MiniGPT-4 at commit d94738a7626ec43eba6c2cddf3cd2043f1a9689a
(2024-09-02). mmeval starts it with the repository as cwd and on PYTHONPATH, and the config
built by mmeval/models/workers/minigpt4.py as argv[1].

Loading is ``demo.py``'s: ``Config(args)`` from the eval config with ``model.ckpt`` (and
``model.llama_model``) given as ``--options`` overrides, the registry's model class
``from_config`` moved to the device, the ``cc_sbu_align`` eval image processor, and ``Chat``
with the demo's stopping criterion (``###``: token ids [835] and [2277, 29937]). The
conversation template follows the model type (``pretrain_vicuna0`` or ``pretrain_llama2``) as
in the demo. The checkpoint's keys are checked against the model (``from_config`` loads it
with ``strict=False`` and ignores the result).

Per request: a fresh copy of the template; the user's image through ``Chat.upload_img`` +
``Chat.encode_img``, its text through ``Chat.ask``; then ``Chat.answer_prepare`` (the
demo's generation arguments), ``Chat.model_generate`` and ``Chat.answer``'s decoding (cut at
``###``, keep what follows ``Assistant:``). The one deviation from ``Chat.answer``: it always
samples, whereas here ``do_sample`` follows the request (greedy at temperature 0).
"""

from __future__ import annotations

import argparse
import os
import time

from worker_loop import RequestError, seed_everything, serve, text_of, versions

STOP_WORD_IDS = [[835], [2277, 29937]]  # '###' (two tokenisations), as in demo.py


def load(config: dict) -> tuple:
    import importlib

    import torch
    from minigpt4.common.config import Config
    from minigpt4.common.registry import registry
    from minigpt4.conversation.conversation import Chat, CONV_VISION_LLama2, CONV_VISION_Vicuna0, StoppingCriteriaSub
    from transformers import StoppingCriteriaList

    # Registration side effects, as demo.py's star imports: the cc_sbu_align builder the eval
    # config names, the model classes, the image processors.
    for module in ("minigpt4.datasets.builders", "minigpt4.models", "minigpt4.processors"):
        importlib.import_module(module)
    options = [f"model.ckpt={config['ckpt']}"]
    if config.get("llama_model"):
        options.append(f"model.llama_model={config['llama_model']}")
    options += list(config.get("options", []))
    device = config.get("device", "cuda:0")
    cfg = Config(argparse.Namespace(cfg_path=config["cfg"], options=options))
    model_config = cfg.model_cfg
    llama = str(model_config.llama_model)
    if not os.path.isdir(llama) and not config.get("llama_model"):
        raise ValueError(f"the model config names llama_model={llama!r}, not a folder: set the model arg llama_model= to the LLM weights")
    model_config.device_8bit = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    model = registry.get_model_class(model_config.arch).from_config(model_config).to(device)
    check_ckpt(model, torch.load(config["ckpt"], map_location="cpu"), config["ckpt"])
    template = {"pretrain_vicuna0": CONV_VISION_Vicuna0, "pretrain_llama2": CONV_VISION_LLama2}[model_config.model_type]
    vis_cfg = cfg.datasets_cfg.cc_sbu_align.vis_processor.train
    vis_processor = registry.get_processor_class(vis_cfg.name).from_config(vis_cfg)
    stops = [torch.tensor(ids).to(device) for ids in STOP_WORD_IDS]
    chat = Chat(model, vis_processor, device=device, stopping_criteria=StoppingCriteriaList([StoppingCriteriaSub(stops=stops)]))
    info = {
        "model": "MiniGPT-4",
        "arch": str(model_config.arch),
        "model_type": str(model_config.model_type),
        "cfg": config["cfg"],
        "ckpt": config["ckpt"],
        "llama_model": llama,
        "device": device,
        "versions": versions("torch", "transformers", "omegaconf"),
    }

    def handle(request: dict) -> dict:
        return answer(chat, template, config, request)

    return handle, info


def check_ckpt(model: object, ckpt: dict, path: str) -> None:
    weights = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else {}
    own = set(model.state_dict())
    unexpected = [k for k in weights if k not in own]
    if unexpected or "llama_proj.weight" not in weights:
        raise RuntimeError(
            f"the checkpoint {path} does not fit this MiniGPT-4 model ({len(unexpected)} unknown keys, e.g. {unexpected[:4]}; "
            f"llama_proj.weight {'present' if 'llama_proj.weight' in weights else 'missing'})"
        )


def answer(chat: object, template: object, config: dict, request: dict) -> dict:
    gen = request["generation"]
    seed_everything(gen["seed"])
    conv = template.copy()
    img_list: list = []
    system = "\n".join(text_of(m) for m in request["messages"] if m["role"] == "system").strip()
    for m in request["messages"]:
        if m["role"] == "user":
            for part in m["parts"]:
                if part["type"] == "image":
                    if img_list:
                        raise RequestError("MiniGPT-4's Chat encodes one image per conversation")
                    chat.upload_img(part["path"], conv, img_list)
                    chat.encode_img(img_list)
                elif part["type"] != "text":
                    raise RequestError(f"MiniGPT-4 does not take {part['type']} input")
            text = text_of(m)
            if system:
                text, system = f"{system}\n{text}", ""
            chat.ask(text, conv)
        elif m["role"] == "assistant":
            conv.append_message(conv.roles[1], text_of(m))
    if not img_list:
        raise RequestError("MiniGPT-4 needs an image in the conversation")
    sample = gen["temperature"] > 0
    kwargs = chat.answer_prepare(
        conv,
        img_list,
        max_new_tokens=gen["max_new_tokens"],
        num_beams=config.get("num_beams", 1),
        min_length=1,
        top_p=gen["top_p"],
        repetition_penalty=config.get("repetition_penalty", 1.05),
        length_penalty=1,
        temperature=gen["temperature"] if sample else 1.0,
        max_length=config.get("max_length", 2000),
    )
    kwargs["do_sample"] = sample
    start = time.perf_counter()
    tokens = chat.model_generate(**kwargs)[0]
    generate_s = time.perf_counter() - start
    raw = chat.model.llama_tokenizer.decode(tokens, skip_special_tokens=True)
    text = raw.split("###")[0].split("Assistant:")[-1].strip()
    return {
        "text": text,
        "signal_tokens": None,
        "meta": {"raw_text": raw, "do_sample": sample},
        "timings": {"generate_s": round(generate_s, 6)},
    }


if __name__ == "__main__":
    raise SystemExit(serve(load))
