"""FVD (tiny-video and a TorchScript stand-in for StyleGAN-V's I3D) and CLIPSIM.

Clips are APNGs drawn with numpy (a square moving over a plain background) written under
tmp_path. The I3D stand-in is a small scripted module with the real file's call signature
``forward(x, rescale, resize, return_features)``, saved with ``torch.jit.save`` and loaded back
through ``i3d_torchscript=PATH``; it refuses anything but uint8 (N, 3, T, H, W) input.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmeval.media.video import decode_video, encode_apng, sample_frames
from mmeval.metrics.base import ParseContext, get_metric
from mmeval.metrics.extractors.i3d import I3D_URL, I3DTorchScript
from mmeval.metrics.extractors.tiny_video import TinyVideoExtractor
from mmeval.metrics.features import ExtractorWeightsError, get_extractor
from mmeval.metrics.frechet import Gaussian, frechet_distance
from mmeval.metrics.tiny_clip import tiny_clip_dir
from mmeval.types import MediaError, MediaPart

# torch.jit is what StyleGAN-V's i3d_torchscript.pt needs, deprecated or not
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def _clip(rng: np.random.Generator, frames: int, size: tuple[int, int] = (32, 32), speed: int = 1) -> np.ndarray:
    h, w = size
    video = np.empty((frames, h, w, 3), np.uint8)
    video[:] = rng.integers(0, 256, 3)
    colour, y, x = rng.integers(0, 256, 3), int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    for t in range(frames):
        xs = (x + speed * t) % (w - 8)
        video[t, y : y + 8, xs : xs + 8] = colour
    return video


def _write(root: Path, folder: str, n: int, seed: int, frames: int = 16, speed: int = 1, size: tuple[int, int] = (32, 32)) -> list[str]:
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        (root / folder / f"{i}.png").write_bytes(encode_apng(_clip(rng, frames, size, speed), fps=8))
        out.append(f"{folder}/{i}.png")
    return out


def _ctxs(root: Path, n: int, captions: list[str] | None = None) -> list[ParseContext]:
    return [ParseContext(doc_id=f"v{i}", root=root, doc={"caption": captions[i] if captions else f"c{i}"}) for i in range(n)]


class FakeI3D(torch.nn.Module):
    """Same signature as i3d_torchscript.pt; features depend on channel, time and value range."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(12, 400, generator=gen))

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 5 or x.shape[1] != 3:
            raise RuntimeError("expected uint8 videos of shape (N, 3, T, H, W)")
        v = x.float()
        if rescale:
            v = v / 127.5 - 1.0
        if resize:
            v = F.interpolate(v, size=[v.shape[2], 8, 8], mode="trilinear", align_corners=False)
        pooled = v.mean(dim=[3, 4])  # (N, 3, T)
        segments = pooled.reshape(pooled.shape[0], 3, 4, pooled.shape[2] // 4).mean(-1).reshape(pooled.shape[0], 12)
        feats = segments @ self.proj
        return feats if return_features else feats.softmax(-1)


@pytest.fixture(scope="module")
def i3d_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(FakeI3D()), str(path))
    return path


@pytest.fixture
def clips(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """12 generated (fast squares, 20 frames) and 12 reference clips (slow, 16 frames)."""
    gen = _write(tmp_path, "gen", 12, seed=1, frames=20, speed=3)
    ref = [str(tmp_path / p) for p in _write(tmp_path, "ref", 12, seed=2)]
    return tmp_path, gen, ref


# ----------------------------------------------------------------------------- FVD


def test_i3d_extractor_calls_the_torchscript_like_stylegan_v(tmp_path: Path, i3d_path: Path) -> None:
    rel = _write(tmp_path, "v", 2, seed=3, frames=20) + _write(tmp_path, "w", 1, seed=4, frames=9, size=(24, 40))
    paths = [str(tmp_path / p) for p in rel]
    ext = get_extractor("i3d", {"i3d_torchscript": str(i3d_path), "frames": "8", "device": "cpu", "clip_model": "ignored"})
    assert isinstance(ext, I3DTorchScript) and ext.id.endswith(":8f-even") and ext.dim == 400
    feats = ext.features(paths)  # two frame sizes: two calls
    assert feats.shape == (3, 400) and feats.dtype == np.float64
    net = torch.jit.load(str(i3d_path))
    for path, row in zip(paths, feats, strict=True):
        frames = sample_frames(decode_video(MediaPart("video", path=path))[0], 8)
        x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].contiguous()  # (1, 3, T, H, W) uint8
        np.testing.assert_allclose(
            row, net(x, rescale=True, resize=True, return_features=True)[0].detach().double().numpy(), rtol=1e-5, atol=1e-5
        )
    first = get_extractor("i3d", {"i3d_torchscript": str(i3d_path), "frames": 8, "frame_sampling": "consecutive"}).features(paths[:1])
    assert not np.allclose(first[0], feats[0])  # the first 8 of 20 frames, not 8 spread over all 20


def test_fvd_with_i3d(clips: tuple[Path, list[str], list[str]], i3d_path: Path) -> None:
    root, gen, ref = clips
    fvd = get_metric("fvd", i3d_torchscript=str(i3d_path), frames=16, bootstrap=5)
    out = fvd.corpus_score([{"media": [p]} for p in gen], [], _ctxs(root, 12), all_targets=ref)["fvd"]
    # The Fréchet code itself is checked against torchmetrics in test_image_gen_metrics; here:
    # the generated and reference sets, and the frames, reach it as they should. (Tolerance:
    # 12 clips in 400 dimensions give rank-11 covariances, whose ~389 zero eigenvalues turn
    # float rounding from another row order or batch split into ~1e-7 relative.)
    ext = I3DTorchScript(str(i3d_path), frames=16)
    real, fake = Gaussian.fit(ext.features(ref)), Gaussian.fit(ext.features([str(root / p) for p in gen]))
    assert out.value == pytest.approx(frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma), rel=1e-6) and out.value > 0
    assert out.n == 12 and out.ci_method == "bootstrap_se" and out.ci_low < out.ci_high
    same = get_metric("fvd", i3d_torchscript=str(i3d_path), bootstrap=0)
    assert same.corpus_score([{"media": [r]} for r in ref], [], _ctxs(root, 12), all_targets=ref)["fvd"].value < 1e-6


def test_i3d_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(ExtractorWeightsError) as err:
        get_metric("fvd")
    assert "--metric-args i3d_torchscript=PATH" in str(err.value) and I3D_URL in str(err.value)
    with pytest.raises(ExtractorWeightsError, match=r"i3d_torchscript=.*nope\.pt: no such file"):
        get_metric("fvd", i3d_torchscript=str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    rel = _write(tmp_path, "v", 1, seed=5)
    with pytest.raises(ExtractorWeightsError, match="not a TorchScript file"):
        I3DTorchScript(str(tmp_path / "junk.pt")).features([str(tmp_path / rel[0])])


def test_short_clips_are_an_error_naming_the_file(clips: tuple[Path, list[str], list[str]], i3d_path: Path) -> None:
    root, gen, ref = clips
    short = _write(root, "short", 1, seed=6, frames=5)
    parsed = [{"media": [p]} for p in [*gen[:3], short[0]]]
    for metric in (get_metric("fvd", extractor="tiny-video"), get_metric("fvd", i3d_torchscript=str(i3d_path))):
        with pytest.raises(MediaError, match=r"short/0\.png has 5 frames; the video features need at least 16"):
            metric.corpus_score(parsed, [], _ctxs(root, 4), all_targets=ref)


def test_fvd_tiny_video_and_reference_cache(clips: tuple[Path, list[str], list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    root, gen, _ = clips
    ref = [str(root / p) for p in _write(root, "ref-cache", 12, seed=77)]  # used by no other test
    fvd = get_metric("fvd", extractor="tiny-video", bootstrap=0)
    calls: list[int] = []
    original = fvd.extractor.features
    monkeypatch.setattr(fvd.extractor, "features", lambda items: (calls.append(len(items)), original(items))[1])
    parsed = [{"media": [p]} for p in gen] + [{"media": []}]
    first = fvd.corpus_score(parsed, [], _ctxs(root, 13), all_targets=ref)["fvd_tiny_video"]
    assert fvd.reference_from_cache is False and first.n == 12 and first.value > 0
    n_calls = len(calls)
    again = get_metric("fvd", extractor="tiny-video", bootstrap=0)
    second = again.corpus_score(parsed, [], _ctxs(root, 13), all_targets=ref)["fvd_tiny_video"]
    assert again.reference_from_cache is True and len(calls) == n_calls  # neither set recomputed
    assert second.value == pytest.approx(first.value, abs=1e-9)
    zero = get_metric("fvd", extractor="tiny-video", bootstrap=0).corpus_score(
        [{"media": [r]} for r in ref], [], _ctxs(root, 12), all_targets=ref
    )
    assert zero["fvd_tiny_video"].value < 1e-6


def test_tiny_video_is_deterministic_and_sees_motion(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    video = _clip(rng, 16, speed=2)
    (tmp_path / "a.png").write_bytes(encode_apng(video, fps=8))
    (tmp_path / "b.png").write_bytes(encode_apng(video[rng.permutation(16)], fps=8))
    torch.manual_seed(123)  # the global RNG must not matter
    a = TinyVideoExtractor().features([str(tmp_path / "a.png"), str(tmp_path / "b.png")])
    torch.manual_seed(456)
    again = TinyVideoExtractor().features([str(tmp_path / "a.png")])
    assert np.array_equal(a[0], again[0]) and a.shape == (2, 128)
    np.testing.assert_allclose(a[0, :64], a[1, :64])  # same frames: same appearance half
    assert not np.allclose(a[0, 64:], a[1, 64:])  # shuffled in time: different motion half


# ----------------------------------------------------------------------------- CLIPSIM


@functools.cache
def _tiny_clip() -> tuple:
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    path = tiny_clip_dir()
    return CLIPModel.from_pretrained(path).eval(), CLIPTokenizer.from_pretrained(path), CLIPImageProcessorPil.from_pretrained(path)


def _reference_clipsim(path: Path, caption: str, frames: int) -> float:
    """Mean cosine from CLIPModel's own forward pass, one frame at a time."""
    model, tok, proc = _tiny_clip()
    video = sample_frames(decode_video(MediaPart("video", path=str(path)))[0], frames)
    cos = []
    for frame in video:
        with torch.inference_mode():
            pixels = proc(images=[Image.fromarray(frame)], return_tensors="pt")["pixel_values"]
            out = model(input_ids=tok([caption], return_tensors="pt")["input_ids"], pixel_values=pixels)
        cos.append(float((out.image_embeds[0].double() * out.text_embeds[0].double()).sum()))
    return float(np.mean(cos))


def test_clipsim_matches_the_models_own_embeddings(tmp_path: Path) -> None:
    clip_dir = tiny_clip_dir()
    rel = _write(tmp_path, "gen", 3, seed=9, frames=10, speed=2)
    captions = ["a red square moving right", "a blue circle", "green"]
    parsed = [{"media": [rel[0]]}, {"media": []}, {"media": [rel[1]]}, {"media": [rel[2]]}]
    ctxs = _ctxs(tmp_path, 4, [captions[0], "unused", captions[1], captions[2]])
    metric = get_metric("clipsim", caption="caption", frames=4, clip_model=str(clip_dir), feature_batch_size=3)
    scores = metric.score_batch(parsed, [None] * 4, ctxs)
    assert scores[1] == {}
    expected = [_reference_clipsim(tmp_path / p, c, 4) for p, c in zip(rel, captions, strict=True)]
    assert [scores[i]["clipsim"] for i in (0, 2, 3)] == pytest.approx(expected, abs=1e-5)
    # frames beyond the clip's length: all its frames; scale multiplies; batch size changes nothing
    every = get_metric("clipsim", caption="{{ caption }}", frames=64, scale=100, clip_model=str(clip_dir), feature_batch_size=1)
    got = every.score_batch(parsed[:1], [None], ctxs[:1])[0]["clipsim"]
    assert got == pytest.approx(100 * _reference_clipsim(tmp_path / rel[0], captions[0], 10), abs=1e-3)
