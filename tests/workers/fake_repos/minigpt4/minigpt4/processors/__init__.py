"""Fake of minigpt4.processors: the blip2_image_eval processor (resize, to tensor, normalise)."""

import numpy as np
import torch

from minigpt4.common.registry import registry


@registry.register_processor("blip2_image_eval")
class Blip2ImageEvalProcessor:
    def __init__(self, image_size=224):
        self.image_size = image_size

    def __call__(self, item):
        arr = np.asarray(item.convert("RGB").resize((self.image_size, self.image_size)), dtype=np.float32) / 255.0
        return (torch.from_numpy(arr).permute(2, 0, 1) - 0.5) / 0.5

    @classmethod
    def from_config(cls, cfg=None):
        return cls(image_size=(cfg or {}).get("image_size", 224))
