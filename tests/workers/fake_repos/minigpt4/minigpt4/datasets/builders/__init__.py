"""Fake of minigpt4.datasets.builders: registers the cc_sbu_align builder the eval config names."""

import os
from typing import ClassVar

from minigpt4.common.registry import registry

HERE = os.path.dirname(os.path.abspath(__file__))


@registry.register_builder("cc_sbu_align")
class CCSBUAlignBuilder:
    DATASET_CONFIG_DICT: ClassVar[dict] = {"default": "configs/datasets/cc_sbu/align.yaml"}

    @classmethod
    def default_config_path(cls, type="default"):
        return os.path.join(HERE, "..", "..", cls.DATASET_CONFIG_DICT[type])
