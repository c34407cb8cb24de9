"""Fake of NExT-GPT-Lagacy/code/config: the same functions and YAML layering, relative to the cwd."""

import yaml


def load_model_config(stage, mode):
    with open(f"config/stage_{stage}.yaml") as f:
        configuration = yaml.safe_load(f)
    out = {}
    for key, value in configuration.items():
        if key in ("train", "test", "validation"):
            if mode == key:
                out.update(value)
        else:
            out[key] = value
    return out


def load_base_config():
    with open("config/base.yaml") as f:
        return yaml.safe_load(f)


def load_config(args):
    configuration = load_base_config()
    configuration.update(load_model_config(args["stage"], args["mode"]))
    return configuration
