"""Fake of minigpt4.common.config.Config: the same layering (model defaults < eval config <
--options), with attribute access in place of OmegaConf."""

import yaml

from minigpt4.common.registry import registry


class Node(dict):
    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


def _node(value):
    return Node({k: _node(v) for k, v in value.items()}) if isinstance(value, dict) else value


def _merge(base, other):
    out = dict(base)
    for key, value in other.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


class Config:
    def __init__(self, args):
        self.args = args
        registry.register("configuration", self)
        user = {}
        for opt in args.options or []:
            key, value = opt.split("=", 1)
            target = user
            *parents, last = key.split(".")
            for p in parents:
                target = target.setdefault(p, {})
            target[last] = yaml.safe_load(value)
        config = _load(args.cfg_path)
        model_cls = registry.get_model_class(config["model"]["arch"])
        model_type = user.get("model", {}).get("model_type") or config["model"]["model_type"]
        merged = _merge(_load(model_cls.default_config_path(model_type)), {"model": config["model"]})
        for name, dataset in config["datasets"].items():
            builder = registry.get_builder_class(name)
            merged = _merge(merged, _merge(_load(builder.default_config_path()), {"datasets": {name: dataset}}))
        merged = _merge(merged, {"run": config["run"]})
        self.config = _node(_merge(merged, user))

    @property
    def run_cfg(self):
        return self.config.run

    @property
    def datasets_cfg(self):
        return self.config.datasets

    @property
    def model_cfg(self):
        return self.config.model
