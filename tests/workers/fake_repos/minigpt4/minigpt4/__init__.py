"""Fake of the MiniGPT-4 package: the inference path of demo.py, tiny and deterministic."""
