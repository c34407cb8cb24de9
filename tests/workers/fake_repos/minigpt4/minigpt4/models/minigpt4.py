"""Fake of minigpt4.models.minigpt4.MiniGPT4: registry name, config loading, checkpoint loading
(``ckpt["model"]``, non-strict, as the real ``from_config``), ``encode_img``,
``get_context_emb`` and ``llama_model.generate`` over a character-level tokenizer.

The "LLM" answers with the dominant colour of the image it was shown and the first 8 hex
digits of the sha256 of the prompt text it received, then runs on past the ``###`` stop word
(which the caller must cut). Sampling appends seeded random letters. Calls are appended to
``calls.jsonl`` in the repository root."""

import contextlib
import hashlib
import json
import os
from typing import ClassVar

import torch
from torch import nn

from minigpt4.common.registry import registry

PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = ("red", "green", "blue")


class CharTokens:
    def __init__(self, ids):
        self.input_ids = ids

    def to(self, device):
        return self


class CharTokenizer:
    """id = code point + 10; 0 pad, 1 bos, 2 eos."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __call__(self, text, return_tensors="pt", add_special_tokens=True):
        ids = ([self.bos_token_id] if add_special_tokens else []) + [ord(c) + 10 for c in text]
        return CharTokens(torch.tensor([ids], dtype=torch.long))

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(int(i) - 10) if int(i) >= 10 else ("" if skip_special_tokens else f"<{int(i)}>") for i in ids)


class FakeLlama(nn.Module):
    def __init__(self, owner, hidden):
        super().__init__()
        self.embed = nn.Embedding(256, hidden)
        self._owner = [owner]  # a list: not a submodule

    def generate(
        self,
        inputs_embeds,
        max_new_tokens,
        stopping_criteria,
        num_beams,
        do_sample,
        min_length,
        top_p,
        repetition_penalty,
        length_penalty,
        temperature,
    ):
        owner = self._owner[0]
        prompt = owner.last_prompt
        text = f"The image is {owner.last_colour}. [{hashlib.sha256(prompt.encode()).hexdigest()[:8]}]"
        if do_sample:
            text += " " + "".join(chr(97 + int(i)) for i in torch.randint(0, 26, (6,)))
        text += "###Human: keep going"
        call = {
            "prompt": prompt,
            "do_sample": do_sample,
            "temperature": temperature,
            "top_p": top_p,
            "num_beams": num_beams,
            "max_new_tokens": max_new_tokens,
            "repetition_penalty": repetition_penalty,
            "stopping": stopping_criteria is not None,
            "embeds": list(inputs_embeds.shape),
        }
        with open(os.path.join(PKG, "..", "calls.jsonl"), "a") as f:
            f.write(json.dumps(call) + "\n")
        ids = owner.llama_tokenizer(text, add_special_tokens=False).input_ids[0][:max_new_tokens]
        return ids.unsqueeze(0)


@registry.register_model("minigpt4")
class MiniGPT4(nn.Module):
    PRETRAINED_MODEL_CONFIG_DICT: ClassVar[dict] = {"pretrain_vicuna0": "configs/models/minigpt4_vicuna0.yaml"}

    def __init__(self, llama_model, img_size=224, end_sym="\n", low_resource=False, device_8bit=0):
        super().__init__()
        with open(os.path.join(llama_model, "config.json")) as f:
            hidden = json.load(f)["hidden_size"]
        self.llama_tokenizer = CharTokenizer()
        self.llama_model = FakeLlama(self, hidden)
        self.llama_proj = nn.Linear(3, hidden)
        self.end_sym = end_sym
        self.last_prompt, self.last_colour = None, None

    @classmethod
    def default_config_path(cls, model_type):
        return os.path.join(PKG, cls.PRETRAINED_MODEL_CONFIG_DICT[model_type])

    @classmethod
    def from_config(cls, cfg):
        model = cls(
            llama_model=cfg.get("llama_model"),
            img_size=cfg.get("image_size"),
            end_sym=cfg.get("end_sym", "\n"),
            low_resource=cfg.get("low_resource", False),
            device_8bit=cfg.get("device_8bit", 0),
        )
        ckpt_path = cfg.get("ckpt", "")
        if ckpt_path:
            model.load_state_dict(torch.load(ckpt_path, map_location="cpu")["model"], strict=False)
        return model

    @property
    def device(self):
        return self.llama_proj.weight.device

    def maybe_autocast(self):
        return contextlib.nullcontext()

    def encode_img(self, image):
        rgb = image.mean(dim=(2, 3))  # (B, 3)
        self.last_colour = COLOURS[int(rgb[0].argmax())]
        emb = self.llama_proj(rgb).unsqueeze(1)
        return emb, torch.ones(emb.shape[:-1], dtype=torch.long)

    def embed_tokens(self, ids):
        return self.llama_model.embed(ids % 256)

    def get_context_emb(self, prompt, img_list):
        segs = prompt.split("<ImageHere>")
        assert len(segs) == len(img_list) + 1, "Unmatched numbers of image placeholders and images."
        self.last_prompt = prompt
        embs = [self.embed_tokens(self.llama_tokenizer(s, add_special_tokens=i == 0).input_ids) for i, s in enumerate(segs)]
        mixed = [e for pair in zip(embs[:-1], img_list, strict=True) for e in pair] + [embs[-1]]
        return torch.cat(mixed, dim=1)
