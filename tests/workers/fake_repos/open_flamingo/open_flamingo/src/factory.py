"""Fake of open_flamingo.src.factory: same signature and return values (model, image
processor, tokenizer). The language model folder holds a config.json ({"n_layers": N}); the
tokenizer is character-level with OpenFlamingo's special tokens added."""

import json
import os
import re

import numpy as np
import torch
from torch import nn

from .flamingo import Flamingo

SPECIAL = ("<|endofchunk|>", "<image>", "<PAD>")
KNOWN_VISION = {"ViT-L-14": 16, "ViT-B-32": 8}


class CharTokenizer:
    """Specials get ids 1..3, characters code point + 10; encodes a batch into padded tensors."""

    def __init__(self):
        self.ids = {tok: i + 1 for i, tok in enumerate(SPECIAL)}
        self.padding_side = "right"
        self.pad_token_id = self.ids["<PAD>"]

    def encode(self, text):
        out = []
        for piece in re.split("(" + "|".join(re.escape(s) for s in SPECIAL) + ")", text):
            out.extend([self.ids[piece]] if piece in self.ids else [ord(c) + 10 for c in piece])
        return out

    def __call__(self, texts, return_tensors="pt", padding="longest", **kwargs):
        rows = [self.encode(t) for t in texts]
        n = max(len(r) for r in rows)
        pad = [[self.pad_token_id] * (n - len(r)) for r in rows]
        ids = [p + r if self.padding_side == "left" else r + p for r, p in zip(rows, pad, strict=True)]
        mask = [
            [0] * len(p) + [1] * len(r) if self.padding_side == "left" else [1] * len(r) + [0] * len(p)
            for r, p in zip(rows, pad, strict=True)
        ]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def decode(self, ids, skip_special_tokens=False):
        names = {i: t for t, i in self.ids.items()}
        return "".join(chr(int(i) - 10) if int(i) >= 10 else ("" if skip_special_tokens else names.get(int(i), "")) for i in ids)


def image_transform(image):
    arr = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def create_model_and_transforms(
    clip_vision_encoder_path,
    clip_vision_encoder_pretrained,
    lang_encoder_path,
    tokenizer_path,
    cross_attn_every_n_layers=1,
    use_local_files=False,
    decoder_layers_attr_name=None,
    freeze_lm_embeddings=False,
    cache_dir=None,
    **flamingo_kwargs,
):
    if clip_vision_encoder_path not in KNOWN_VISION:
        raise RuntimeError(f"Model config for {clip_vision_encoder_path} not found.")
    if clip_vision_encoder_pretrained != "openai" and not os.path.isfile(clip_vision_encoder_pretrained):
        raise RuntimeError(f"Pretrained weights ({clip_vision_encoder_pretrained}) not found")
    tokenizer = CharTokenizer()
    with open(os.path.join(tokenizer_path, "config.json")):
        pass
    with open(os.path.join(lang_encoder_path, "config.json")) as f:
        n_layers = json.load(f)["n_layers"]
    lang_encoder = nn.Module()
    lang_encoder.gated_cross_attn_layers = nn.ModuleList(
        [nn.Linear(4, 4) if (i + 1) % cross_attn_every_n_layers == 0 else None for i in range(n_layers)]
    )
    model = Flamingo(
        nn.Linear(3, KNOWN_VISION[clip_vision_encoder_path]),
        lang_encoder,
        tokenizer.encode("<|endofchunk|>")[-1],
        tokenizer.encode("<image>")[-1],
        vis_dim=KNOWN_VISION[clip_vision_encoder_path],
        cross_attn_every_n_layers=cross_attn_every_n_layers,
        tokenizer=tokenizer,
    )
    return model, image_transform, tokenizer
