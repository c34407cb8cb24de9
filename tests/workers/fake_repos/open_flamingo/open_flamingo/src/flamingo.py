"""Fake of open_flamingo.src.flamingo.Flamingo: ``generate(vision_x, lang_x, attention_mask,
**kwargs)`` checks OpenFlamingo's input contract (vision_x is (B, T_img, F=1, C, H, W) with one
image per ``<image>`` token) and returns lang_x followed by the new tokens: the dominant colour
of each image, then ``<|endofchunk|>`` (the end of sequence), cut at ``max_new_tokens``.
Calls are appended to ``calls.jsonl`` in the repository root."""

import json
import os

import torch
from torch import nn

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
COLOURS = ("red", "green", "blue")


class Flamingo(nn.Module):
    def __init__(self, vision_encoder, lang_encoder, eoc_token_id, media_token_id, vis_dim, cross_attn_every_n_layers=1, tokenizer=None):
        super().__init__()
        self.eoc_token_id, self.media_token_id, self.vis_dim = eoc_token_id, media_token_id, vis_dim
        self.vision_encoder = vision_encoder
        self.perceiver = nn.Linear(vis_dim, vis_dim)
        self.lang_encoder = lang_encoder
        self._tokenizer = [tokenizer]

    def generate(self, vision_x, lang_x, attention_mask=None, **kwargs):
        assert vision_x.ndim == 6, "vision_x should be of shape (b, T_img, F, C, H, W)"
        b, t, f = vision_x.shape[:3]
        assert f == 1, "Only single frame supported"
        assert b == lang_x.shape[0] == 1
        assert int((lang_x[0] == self.media_token_id).sum()) == t, "one <image> token per image"
        assert attention_mask is not None and attention_mask.shape == lang_x.shape
        num_beams = kwargs.pop("num_beams", 1)
        eos = kwargs.pop("eos_token_id", self.eoc_token_id)
        tok = self._tokenizer[0]
        call = {"prompt": tok.decode(lang_x[0]), "num_beams": num_beams, "images": t, "dtype": str(vision_x.dtype), **kwargs}
        with open(os.path.join(ROOT, "calls.jsonl"), "a") as fh:
            fh.write(json.dumps(call) + "\n")
        colours = [COLOURS[int(vision_x[0, i, 0].mean(dim=(1, 2)).argmax())] for i in range(t)]
        answer = " " + " and ".join(colours)
        if kwargs.get("do_sample"):
            answer += " " + "".join(chr(97 + int(i)) for i in torch.randint(0, 26, (4,)))
        new = [*tok.encode(answer), eos]
        new = new[: kwargs["max_new_tokens"]]
        return torch.cat([lang_x, torch.tensor([new], dtype=lang_x.dtype)], dim=1)
