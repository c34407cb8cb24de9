"""Fake model repositories for the worker adapters, copied into a test's tmp folder.

The sources live in tests/workers/fake_repos/ (same module layout, class names and method
signatures as the real repositories' inference paths, see each file's docstring); these
builders copy them and write the checkpoints the adapters and workers load: tiny torch state
dicts with the real key names, so the workers' checkpoint checks run for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

FAKE_REPOS = Path(__file__).resolve().parent / "fake_repos"
HIDDEN = 16


def _copy(name: str, root: Path, dest: str) -> Path:
    repo = root / dest
    shutil.copytree(FAKE_REPOS / name, repo, ignore=shutil.ignore_patterns("__pycache__", "calls.jsonl"))
    return repo


def nextgpt_delta(extra: dict[str, torch.Tensor] | None = None, drop: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The delta state dict of the fake NextGPTModel (the trained parts, as agent.save_model keeps)."""
    g = torch.Generator().manual_seed(1)
    delta = {
        "llama_proj.weight": torch.randn(HIDDEN, 8, generator=g),
        "llama_proj.bias": torch.randn(HIDDEN, generator=g),
        "llama_model.q_proj.lora_A.weight": torch.randn(2, HIDDEN, generator=g),
        "llama_model.q_proj.lora_B.weight": torch.randn(HIDDEN, 2, generator=g),
    }
    for name in ("gen_text_hidden_fcs", "gen_text_hidden_fcs_video", "gen_text_hidden_fcs_audio"):
        delta[f"{name}.0.weight"] = torch.randn(8, HIDDEN, generator=g)
        delta[f"{name}.0.bias"] = torch.randn(8, generator=g)
    for key in drop:
        delta.pop(key)
    return {**delta, **(extra or {})}


def nextgpt_repo(root: Path, delta: dict[str, torch.Tensor] | None = None) -> Path:
    """A NExT-GPT checkout (2024 layout) with its README's checkpoint folders filled in."""
    repo = _copy("nextgpt", root, "NExT-GPT")
    ckpt = repo / "NExT-GPT-Lagacy" / "ckpt"
    imagebind = ckpt / "pretrained_ckpt" / "imagebind_ckpt" / "huge"
    vicuna = ckpt / "pretrained_ckpt" / "vicuna_ckpt" / "7b_v0"
    delta_dir = ckpt / "delta_ckpt" / "nextgpt" / "7b_tiva_v0"
    for folder in (imagebind, vicuna, delta_dir):
        folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    torch.save({"weight": torch.randn(8, 16, generator=g), "bias": torch.randn(8, generator=g)}, imagebind / "imagebind_huge.pth")
    (vicuna / "config.json").write_text(json.dumps({"hidden_size": HIDDEN}))
    torch.save(nextgpt_delta() if delta is None else delta, delta_dir / "pytorch_model.pt")
    return repo


def minigpt4_repo(root: Path) -> tuple[Path, Path, Path]:
    """(repo, MiniGPT-4 checkpoint file, Vicuna folder)."""
    repo = _copy("minigpt4", root, "MiniGPT-4")
    vicuna = root / "vicuna-7b"
    vicuna.mkdir()
    (vicuna / "config.json").write_text(json.dumps({"hidden_size": HIDDEN}))
    ckpt = root / "pretrained_minigpt4_7b.pth"
    g = torch.Generator().manual_seed(2)
    torch.save(
        {"model": {"llama_proj.weight": torch.randn(HIDDEN, 3, generator=g), "llama_proj.bias": torch.randn(HIDDEN, generator=g)}}, ckpt
    )
    return repo, ckpt, vicuna


def openflamingo_repo(root: Path, n_layers: int = 4, every: int = 2) -> tuple[Path, Path, Path]:
    """(repo, checkpoint.pt trained with cross-attention every ``every`` layers, LM folder)."""
    repo = _copy("open_flamingo", root, "open_flamingo")
    lm = root / "mpt-tiny"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"n_layers": n_layers}))
    g = torch.Generator().manual_seed(3)
    state = {"perceiver.weight": torch.randn(16, 16, generator=g), "perceiver.bias": torch.randn(16, generator=g)}
    for i in range(n_layers):
        if (i + 1) % every == 0:
            state[f"lang_encoder.gated_cross_attn_layers.{i}.weight"] = torch.randn(4, 4, generator=g)
            state[f"lang_encoder.gated_cross_attn_layers.{i}.bias"] = torch.randn(4, generator=g)
    checkpoint = root / "checkpoint.pt"
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, checkpoint)  # as saved by training
    return repo, checkpoint, lm
