"""Fake of NExT-GPT's ``NextGPTModel`` (NExT-GPT-Lagacy/code/model/anyToImageVideoAudio.py).

Same constructor (``**args`` after ``load_config``), same checkpoint layout (ImageBind and
Vicuna under ``pretrained_ckpt_path``, a delta state dict with LoRA, ``llama_proj`` and the
three ``gen_text_hidden_fcs*`` output projectors), same ``generate(inputs)`` contract: it reads
the same input keys, parses ``<Image>path</Image>`` tags with the real prompt split, and
returns the real output shapes: a caption string when no signal token was produced, else
``{"img": [caption + " [IMG0] .. [IMG3]", [PIL images]]}``, ``{"vid": [caption, frames]}``,
``{"aud": [caption, samples]}``. The "LLM" is a rule: it describes the media it was given (by
sha256 prefix) and emits a modality's signal tokens when the request names that modality.
Every call is appended to ``calls.jsonl`` in the code folder, for the tests to inspect.
"""

import hashlib
import json
import os
import re

import numpy as np
import torch
from PIL import Image
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = (
    ("IMG", "num_gen_img_tokens", ("image", "picture", "photo")),
    ("VID", "num_gen_video_tokens", ("video", "clip")),
    ("AUD", "num_gen_audio_tokens", ("sound", "audio")),
)


class LoraLinear(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.base_layer = nn.Linear(dim, dim)
        self.lora_A = nn.Linear(dim, 2, bias=False)
        self.lora_B = nn.Linear(2, dim, bias=False)


class TinyLlama(nn.Module):
    def __init__(self, dim, lora):
        super().__init__()
        self.embed_tokens = nn.Embedding(64, dim)
        self.q_proj = LoraLinear(dim) if lora else nn.Linear(dim, dim)


class NextGPTModel(nn.Module):
    def __init__(self, **args):
        super().__init__()
        self.args = args
        self.stage = args["stage"]
        imagebind = os.path.join(args["pretrained_ckpt_path"], "imagebind_ckpt", args["imagebind_version"], "imagebind_huge.pth")
        self.visual_encoder = nn.Linear(16, 8)
        self.visual_encoder.load_state_dict(torch.load(imagebind, map_location="cpu"))
        with open(os.path.join(args["pretrained_ckpt_path"], "vicuna_ckpt", args["vicuna_version"], "config.json")) as f:
            hidden = json.load(f)["hidden_size"]
        self.llama_model = TinyLlama(hidden, lora=not args.get("freeze_lm"))
        self.llama_proj = nn.Linear(8, hidden)
        self.gen_text_hidden_fcs = nn.ModuleList([nn.Linear(hidden, 8)])
        self.gen_text_hidden_fcs_video = nn.ModuleList([nn.Linear(hidden, 8)])
        self.gen_text_hidden_fcs_audio = nn.ModuleList([nn.Linear(hidden, 8)])
        for key, tag in (("num_gen_img_tokens", "IMG"), ("num_gen_video_tokens", "VID"), ("num_gen_audio_tokens", "AUD")):
            self.args[key.replace("num_gen_", "gen_").replace("_tokens", "_token_idx")] = [f"[{tag}{i}]" for i in range(self.args[key])]
        self.device = "cpu"  # the real model takes torch.cuda.current_device()

    def generate(self, inputs):
        if inputs["temperature"] <= 0:  # transformers' sampling warper refuses it; NExT-GPT always samples
            raise ValueError("`temperature` has to be a strictly positive float")
        with open(os.path.join(HERE, "..", "calls.jsonl"), "a") as f:
            f.write(json.dumps({k: v for k, v in inputs.items() if k not in ("generator", "filter_value")}) + "\n")
        text = inputs["prompt"] + "\n### Assistant:"
        seen = []
        for segment in re.split(r" <|> ", text):  # NExT-GPT's prepare_generation_embedding split
            for kind in ("Image", "Audio", "Video"):
                if segment.startswith(kind + ">"):
                    for path in re.findall(kind + r">(.*?)<\/" + kind, segment):
                        with open(path, "rb") as fh:
                            seen.append(f"{kind.lower()} {hashlib.sha256(fh.read()).hexdigest()[:8]}")
        request = inputs["prompt"].rsplit("Human:", 1)[-1].lower()
        caption = ("I was given " + ", ".join(seen) + ".") if seen else "Hello."
        sequence = caption
        counts = {tag: self.args[key] for tag, key, _ in WORDS}
        for tag, _, words in WORDS:
            if any(w in request for w in words):
                sequence += " " + " ".join(f"[{tag}{i}]" for i in range(counts[tag]))
        sequence = " ".join(sequence.split(" ")[: inputs["max_tgt_len"]]) + " Enjoy!###"
        limits = {"IMG": inputs["max_num_imgs"], "VID": inputs["max_num_vids"], "AUD": inputs["max_num_auds"]}
        found = {tag: sequence.find(f"[{tag}0]") for tag in limits}
        found = {tag: i for tag, i in found.items() if i >= 0 and limits[tag] > 0}
        if not found:
            return [sequence]
        outputs = []
        if "IMG" in found:
            outputs.append({"img": [self._caption(sequence, found["IMG"], "IMG", counts["IMG"]), [self._image(inputs)]]})
        if "VID" in found:
            outputs.append({"vid": [self._caption(sequence, found["VID"], "VID", counts["VID"]), self._video(inputs)]})
        if "AUD" in found:
            outputs.append({"aud": [self._caption(sequence, found["AUD"], "AUD", counts["AUD"]), self._audio(inputs)]})
        return outputs

    @staticmethod
    def _caption(sequence, index, tag, count):
        return sequence[:index].rstrip() + " " + " ".join(f"[{tag}{i}]" for i in range(count))

    def _image(self, inputs):
        noise = torch.rand(32, 32, 3) * (inputs["num_inference_steps_for_img"] / 50.0)
        return Image.fromarray((noise.clamp(0, 1).numpy() * 255).astype(np.uint8))

    def _video(self, inputs):
        noise = torch.rand(inputs["num_frames"], inputs["height"], inputs["width"], 3)
        return [(frame.numpy() * 255).astype(np.uint8) for frame in noise]

    def _audio(self, inputs):
        n = int(inputs["audio_length_in_s"] * 16000)
        return (0.5 * torch.sin(torch.arange(n) * 0.05) + 0.01 * torch.randn(n)).numpy().astype(np.float32)
