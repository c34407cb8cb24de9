"""Test helpers for the worker-process adapters: an echo worker and fake model repositories."""
