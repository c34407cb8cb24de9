"""The diffusers generator adapters on tiny locally built pipelines (CPU, no downloads).

Outputs are compared against bare diffusers calls (the independent reference), and across
batch compositions: a sample's image, clip or video must not depend on the batch it is in.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import numpy as np
import torch
from PIL import Image

from mmeval.media.video import decode_video
from mmeval.models.base import ModelArgsError, build_model, get_model_class, sample_seed
from mmeval.models.diffusers_gen import DiffusersAudio, DiffusersImage, DiffusersVideo
from mmeval.models.tiny_diffusers import (
    TinyAudioLDM,
    TinyStableDiffusion,
    TinyTextToVideo,
    build_tiny_pipeline,
    tiny_pipeline_dir,
)
from mmeval.types import GenerationConfig, MediaPart, Message, Request, Response, TextPart

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ("a red circle", "a blue square on the left", "three green triangles")


def req(rid: str, text: str, seed: int = 0, system: str | None = None, modality: str = "image") -> Request:
    messages = ((Message("system", (TextPart(system),)),) if system else ()) + (Message("user", (TextPart(text),)),)
    return Request(rid, messages=messages, generation=GenerationConfig(seed=seed), output_modality=modality)  # type: ignore[arg-type]


def pixels(r: Response) -> np.ndarray:
    assert r.ok, r.error
    [art] = r.artifacts
    return np.asarray(Image.open(io.BytesIO(art.data or b"")).convert("RGB")).astype(np.int16)


def wav(r: Response) -> tuple[np.ndarray, int]:
    assert r.ok, r.error
    return MediaPart("audio", data=r.artifacts[0].data).load_audio()


def frames(r: Response) -> tuple[np.ndarray, float]:
    assert r.ok, r.error
    return decode_video(MediaPart("video", data=r.artifacts[0].data))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: thread start-up and spinning cost more than the arithmetic (3x on 2 shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sd_dir() -> Path:
    return tiny_pipeline_dir("tiny-sd")


@pytest.fixture(scope="session")
def sd(sd_dir: Path) -> TinyStableDiffusion:
    return TinyStableDiffusion(device="cpu")


@pytest.fixture(scope="session")
def audioldm() -> TinyAudioLDM:
    return TinyAudioLDM(device="cpu")


@pytest.fixture(scope="session")
def t2v() -> TinyTextToVideo:
    return TinyTextToVideo(device="cpu")


# --------------------------------------------------------------------------- builds


def test_sd_build_is_a_real_pipeline_and_deterministic(sd_dir: Path, tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(sd_dir)
    names = {k: type(v).__name__ for k, v in pipe.components.items() if v is not None}
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert names == {
        "vae": "AutoencoderKL",
        "text_encoder": "CLIPTextModel",
        "tokenizer": "CLIPTokenizer",
        "unet": "UNet2DConditionModel",
        "scheduler": "DDIMScheduler",
    }
    tokens = pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer("A red circle")["input_ids"])
    assert tokens == ["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"]
    assert pipe.tokenizer.unk_token_id not in pipe.tokenizer("Zebra ÄÖ 123 ?!")["input_ids"][1:-1]
    again = build_tiny_pipeline("tiny-sd", tmp_path / "again", seed=0)
    other = build_tiny_pipeline("tiny-sd", tmp_path / "other", seed=1)
    for rel in (
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer.json",
        "model_index.json",
    ):
        assert (again / rel).read_bytes() == (sd_dir / rel).read_bytes(), rel
    assert (other / "unet/diffusion_pytorch_model.safetensors").read_bytes() != (
        sd_dir / "unet/diffusion_pytorch_model.safetensors"
    ).read_bytes()


def test_registry_resolves_the_reserved_names() -> None:
    expected = {
        "diffusers-image": (DiffusersImage, "image"),
        "diffusers-audio": (DiffusersAudio, "audio"),
        "diffusers-video": (DiffusersVideo, "video"),
        "tiny-sd": (TinyStableDiffusion, "image"),
        "tiny-audioldm": (TinyAudioLDM, "audio"),
        "tiny-t2v": (TinyTextToVideo, "video"),
    }
    for name, (cls, out) in expected.items():
        got = get_model_class(name)
        assert got is cls and got.name == name
        assert got.capabilities.output_modalities == {out} and got.capabilities.input_modalities == {"text"}
        assert got.capabilities.batchable and got.capabilities.refuses({"text"}, "text") is not None


# --------------------------------------------------------------------------- images


def test_image_equals_a_bare_diffusers_call(sd: TinyStableDiffusion, sd_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    r = req("ref", PROMPTS[0], seed=5)
    [out] = sd.generate([r])
    assert out.meta["seed"] == sample_seed(r) and out.finish_reason == "stop" and out.text == ""
    assert out.artifacts[0].format == "png" and out.artifacts[0].meta["width"] == out.artifacts[0].meta["height"] == 32
    pipe = StableDiffusionPipeline.from_pretrained(sd_dir)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator("cpu").manual_seed(sample_seed(r))
    expected = pipe(PROMPTS[0], num_inference_steps=2, guidance_scale=7.5, generator=gen, output_type="np").images[0]
    expected_u8 = (np.clip(expected, 0, 1) * 255).round().astype(np.int16)
    assert np.array_equal(pixels(out), expected_u8)


def test_image_batch_invariance_and_seeds(sd: TinyStableDiffusion) -> None:
    reqs = [req(f"r{i}", p) for i, p in enumerate(PROMPTS)]
    batched = [pixels(r) for r in sd.generate(reqs)]
    single = [pixels(sd.generate([r])[0]) for r in reqs]
    for b, s in zip(batched, single, strict=True):
        assert b.shape == (32, 32, 3) and np.abs(b - s).max() <= 1
    reseeded = [pixels(r) for r in sd.generate([req(f"r{i}", p, seed=1) for i, p in enumerate(PROMPTS)])]
    for b, s in zip(batched, reseeded, strict=True):
        assert np.abs(b - s).mean() > 2  # another generation seed: other noise, another image
    # Same prompt, other request id: other noise too; same request again: the same bytes.
    twins = sd.generate([req("x", PROMPTS[0]), req("y", PROMPTS[0])])
    assert np.abs(pixels(twins[0]) - pixels(twins[1])).mean() > 2
    assert sd.generate([req("x", PROMPTS[0])])[0].artifacts[0].sha256 == sd.generate([req("x", PROMPTS[0])])[0].artifacts[0].sha256


def test_prompt_is_the_user_text(sd: TinyStableDiffusion) -> None:
    image = Request("m", messages=(Message("user", (TextPart("what?"), MediaPart("image", data=b"png"))),), output_modality="image")
    out = sd.generate(
        [req("a", PROMPTS[1]), req("e", "   "), req("s", "", system="Draw well."), image, req("b", PROMPTS[1], system="Be creative.")]
    )
    assert [r.id for r in out] == ["a", "e", "s", "m", "b"]
    assert "no user text" in (out[1].error or "") and "no user text" in (out[2].error or "")
    assert "text only" in (out[3].error or "") and out[3].finish_reason == "error"
    assert out[0].artifacts[0].sha256 != out[4].artifacts[0].sha256  # other request id, other noise
    assert out[4].artifacts[0].sha256 == sd.generate([req("b", PROMPTS[1])])[0].artifacts[0].sha256  # system text ignored
    other_prompt = sd.generate([req("b", PROMPTS[2])])[0]
    assert other_prompt.artifacts[0].sha256 != out[4].artifacts[0].sha256


def test_settings_reach_the_pipeline(sd_dir: Path, sd: TinyStableDiffusion) -> None:
    base = pixels(sd.generate([req("k", PROMPTS[0])])[0])
    small = TinyStableDiffusion(pretrained=str(sd_dir), device="cpu", height="16", width="24").generate([req("k", PROMPTS[0])])[0]
    assert pixels(small).shape == (16, 24, 3) and small.artifacts[0].meta["width"] == 24
    for key, text, value in (("guidance_scale", "1.0", 1.0), ("negative_prompt", "blurry", "blurry"), ("num_inference_steps", "1", 1)):
        other = TinyStableDiffusion(pretrained=str(sd_dir), device="cpu", **{key: text})
        assert other.info()[key] == value
        assert np.abs(pixels(other.generate([req("k", PROMPTS[0])])[0]) - base).mean() > 0.5, key


def test_lazy_loading_info_card_fingerprint(sd_dir: Path, tmp_path: Path) -> None:
    model = TinyStableDiffusion(pretrained=str(sd_dir), device="cpu")
    info = model.info()
    assert info["weights_loaded"] is False and model.pipe is None
    assert info["pipeline_class"] == "StableDiffusionPipeline" and info["scheduler_class"] == "DDIMScheduler"
    assert (info["num_inference_steps"], info["guidance_scale"], info["dtype"], info["device"]) == (2, 7.5, "float32", "cpu")
    assert info["pretrained"] == str(sd_dir) and info["safety_checker"] is False
    card = model.card
    assert card.modality_encoder == "tiny random CLIPTextModel"
    assert card.modality_generator == "tiny random stable-diffusion (UNet2DConditionModel + AutoencoderKL)"
    header_params = card.params
    model.generate([req("l", PROMPTS[0])])
    assert model.info()["weights_loaded"] is True
    assert (
        model.card.params
        == header_params
        == sum(p.numel() for m in (model.pipe.unet, model.pipe.vae, model.pipe.text_encoder) for p in m.parameters())
    )
    # Fingerprint: stable, and tracks settings and weights.
    fp = model.fingerprint()
    assert TinyStableDiffusion(pretrained=str(sd_dir), device="cpu").fingerprint() == fp
    assert TinyStableDiffusion(pretrained=str(sd_dir), device="cpu", num_inference_steps="3").fingerprint() != fp
    copy = Path(shutil.copytree(sd_dir, tmp_path / "copy"))
    same = TinyStableDiffusion(pretrained=str(copy), device="cpu").fingerprint_extra()
    assert same == model.fingerprint_extra()  # the weights' identity is their content, not their path
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    assert TinyStableDiffusion(pretrained=str(copy), device="cpu").fingerprint() != fp


def test_img2img_checkpoint_loads_as_text_to_image(sd_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(sd_dir, tmp_path / "img2img"))
    index = json.loads((copy / "model_index.json").read_text())
    (copy / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionImg2ImgPipeline"}))
    assert DiffusersImage(pretrained=str(copy), device="cpu").pipeline_cls.__name__ == "StableDiffusionPipeline"
    forced = DiffusersImage(pretrained=str(copy), device="cpu", pipeline="StableDiffusionImg2ImgPipeline")
    assert forced.pipeline_cls.__name__ == "StableDiffusionImg2ImgPipeline"


# --------------------------------------------------------------------------- audio and video


def test_audio_clips(audioldm: TinyAudioLDM) -> None:
    from diffusers import AudioLDMPipeline

    reqs = [req(f"a{i}", p, modality="audio") for i, p in enumerate(PROMPTS[:2])]
    batched = audioldm.generate(reqs)
    for r, br in zip(reqs, batched, strict=True):
        x, rate = wav(br)
        assert rate == 16000 and x.shape == (4000,) and br.artifacts[0].meta == {"sample_rate": 16000, "seconds": 0.25, "size_bytes": 8044}
        assert np.abs(x).max() > 0.01  # a signal, not silence rounded to zero
        alone, _ = wav(audioldm.generate([r])[0])
        assert np.abs(alone - x).max() <= 2 / 32768
    assert np.abs(wav(batched[0])[0] - wav(batched[1])[0]).mean() > 1e-3  # other request, other clip
    # Reference: the bare pipeline with the same generator and settings.
    pipe = AudioLDMPipeline.from_pretrained(audioldm.ckpt.source)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator("cpu").manual_seed(sample_seed(reqs[0]))
    ref = pipe(PROMPTS[0], num_inference_steps=2, audio_length_in_s=0.25, generator=gen, output_type="np").audios[0]
    assert np.abs(np.clip(ref, -1, 1) - wav(batched[0])[0]).max() <= 1 / 32767
    short = TinyAudioLDM(device="cpu", audio_length_s="0.1").generate([reqs[0]])[0]
    assert wav(short)[0].shape == (1600,) and short.artifacts[0].meta["seconds"] == 0.1
    assert audioldm.info()["sample_rate"] == 16000 and audioldm.info()["audio_length_in_s"] == 0.25
    assert audioldm.card.modality_encoder == "tiny random ClapTextModelWithProjection"
    assert "SpeechT5HifiGan" in (audioldm.card.modality_generator or "")


def test_video_clips(t2v: TinyTextToVideo) -> None:
    reqs = [req(f"v{i}", p, modality="video") for i, p in enumerate(PROMPTS[:2])]
    batched = t2v.generate(reqs)
    for r, br in zip(reqs, batched, strict=True):
        clip, fps = frames(br)
        assert clip.shape == (4, 32, 32, 3) and fps == pytest.approx(8.0)
        assert br.artifacts[0].format == "apng" and br.artifacts[0].meta["frames"] == 4
        alone, _ = frames(t2v.generate([r])[0])
        assert np.abs(alone.astype(int) - clip.astype(int)).max() <= 1
    assert np.abs(frames(batched[0])[0].astype(int) - frames(batched[1])[0].astype(int)).mean() > 2  # other request, other video
    two = TinyTextToVideo(device="cpu", num_frames="2", fps="4").generate([reqs[0]])[0]
    clip, fps = frames(two)
    assert clip.shape[0] == 2 and fps == pytest.approx(4.0) and two.artifacts[0].meta["fps"] == 4.0
    assert t2v.card.modality_generator == "tiny random text-to-video-sd (UNet3DConditionModel + AutoencoderKL)"


# --------------------------------------------------------------------------- model args


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("diffusers-image", {}, "pretrained"),
        ("diffusers-image", {"pretrained": "/nonexistent/sd"}, "not a directory"),
        ("tiny-sd", {"num_inference_steps": "0"}, ">= 1"),
        ("tiny-sd", {"num_inference_steps": "two"}, "integer"),
        ("tiny-sd", {"guidance_scale": "nan"}, "finite"),
        ("tiny-sd", {"guidance_scale": "-1"}, ">= 0"),
        ("tiny-sd", {"height": "30"}, "multiple of 8"),
        ("tiny-t2v", {"num_frames": "1.5"}, "integer"),
        ("tiny-sd", {"dtype": "float8"}, "dtype"),
        ("tiny-sd", {"device": "gpu0"}, "torch device"),
        ("tiny-sd", {"pipeline": "NoSuchPipeline"}, "not a diffusers pipeline"),
        ("tiny-sd", {"pipeline": "AutoencoderKL"}, "not a diffusers pipeline"),
        ("tiny-sd", {"pipeline": "DDPMPipeline", "guidance_scale": "3"}, "takes no 'guidance_scale'"),
        ("tiny-sd", {"num_frames": "4"}, "does not take model args"),
        ("tiny-sd", {"seed": "x"}, "seed"),
        ("tiny-sd", {"seed": "1", "pretrained": "/tmp"}, "not both"),
        ("tiny-audioldm", {"height": "32"}, "does not take model args"),
        ("tiny-audioldm", {"audio_length_s": "0"}, "> 0"),
        ("tiny-t2v", {"fps": "-2"}, "> 0"),
    ],
)
def test_bad_model_args_raise(name: str, args: dict[str, str], message: str) -> None:
    with pytest.raises(ModelArgsError, match=message):
        build_model(name, args)


def test_directory_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(ModelArgsError, match=r"model_index\.json"):
        DiffusersImage(pretrained=str(tmp_path))


def test_hub_id_loads_from_cache_and_records_commit(sd_dir: Path, tmp_path: Path) -> None:
    """A hub id is pinned to the cached snapshot's commit and loads from it (offline: a fake HF cache)."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--mmeval--tiny-sd"
    shutil.copytree(sd_dir, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    script = (
        "import json; from mmeval.models.base import build_model; from mmeval.types import *; "
        "m = build_model('diffusers-image', {'pretrained': 'mmeval/tiny-sd', 'device': 'cpu', 'num_inference_steps': '1'}); "
        "before = m.info(); "
        "r = m.generate([Request('h', (Message('user', (TextPart('a red circle'),)),), output_modality='image')])[0]; "
        "print(json.dumps([before['commit'], before['weights_loaded'], m.fingerprint_extra()['commit'], r.error, m.info()['commit']]))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commit, loaded, fp_commit, error, after = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (commit, loaded, fp_commit, error, after) == (sha, False, sha, None, sha)
