"""Fake of minigpt4.common.registry: name -> class maps filled by decorators."""

from typing import ClassVar


class Registry:
    mapping: ClassVar[dict] = {"builder_name_mapping": {}, "model_name_mapping": {}, "processor_name_mapping": {}, "state": {}}

    @classmethod
    def _register(cls, kind, name):
        def wrap(target):
            cls.mapping[kind][name] = target
            return target

        return wrap

    @classmethod
    def register_builder(cls, name):
        return cls._register("builder_name_mapping", name)

    @classmethod
    def register_model(cls, name):
        return cls._register("model_name_mapping", name)

    @classmethod
    def register_processor(cls, name):
        return cls._register("processor_name_mapping", name)

    @classmethod
    def register(cls, name, obj):
        cls.mapping["state"][name] = obj

    @classmethod
    def get_builder_class(cls, name):
        return cls.mapping["builder_name_mapping"].get(name)

    @classmethod
    def get_model_class(cls, name):
        return cls.mapping["model_name_mapping"].get(name)

    @classmethod
    def get_processor_class(cls, name):
        return cls.mapping["processor_name_mapping"].get(name)


registry = Registry()
