"""Fake of minigpt4.models: importing it registers the model classes."""

from minigpt4.models.minigpt4 import MiniGPT4

__all__ = ["MiniGPT4"]
