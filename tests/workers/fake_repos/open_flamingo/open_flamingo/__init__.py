"""Fake of the open_flamingo package: create_model_and_transforms and Flamingo.generate."""

from .src.factory import create_model_and_transforms
from .src.flamingo import Flamingo

__all__ = ["Flamingo", "create_model_and_transforms"]
