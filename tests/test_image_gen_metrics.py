"""FID / KID / Inception Score / CLIPScore, the FID Inception network and the CLIP embedder.

Reference computations are independent of mmeval's: torchmetrics' FID, KID and IS fed the same
features through an identity module, a CLIP forward pass through ``CLIPModel.__call__`` (not
the ``get_*_features`` path the embedder uses), and a hand-written TF1 bilinear resize.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmeval.metrics.base import MetricArgsError, ParseContext, get_metric
from mmeval.metrics.extractors import inception as inc
from mmeval.metrics.extractors.clip import ClipEmbedder, ClipImageFeatures
from mmeval.metrics.extractors.tiny_image import TinyImageExtractor
from mmeval.metrics.features import ExtractorError, ExtractorWeightsError, get_extractor
from mmeval.metrics.image_gen import inception_score, kid_subsets, polynomial_mmd2
from mmeval.metrics.tiny_clip import tiny_clip_dir
from mmeval.types import MediaError

pytestmark = pytest.mark.filterwarnings("ignore:Metric `.*` will save all extracted features:UserWarning")


def _square(rng: np.random.Generator, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    img = np.empty((*size, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    y, x = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    img[y : y + size[0] // 3, x : x + size[1] // 3] = rng.integers(0, 256, 3)
    return img


def _write(root: Path, folder: str, n: int, seed: int, noise: bool = False) -> list[str]:
    """n PNGs under root/folder: coloured squares, or uniform noise; run-relative paths."""
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) if noise else _square(rng)
        Image.fromarray(img).save(root / folder / f"{i}.png")
        out.append(f"{folder}/{i}.png")
    return out


def _ctxs(root: Path, n: int, captions: list[str] | None = None) -> list[ParseContext]:
    return [ParseContext(doc_id=f"d{i}", root=root, doc={"caption": captions[i] if captions else f"c{i}", "i": i}) for i in range(n)]


class Identity(torch.nn.Module):
    """Hands torchmetrics the features we computed, as its 'feature extractor'."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture
def sets(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """40 generated (noise) and 40 reference (squares) images; refs as absolute paths."""
    gen = _write(tmp_path, "gen", 40, seed=1, noise=True)
    ref = [str(tmp_path / p) for p in _write(tmp_path, "ref", 40, seed=2)]
    return tmp_path, gen, ref


# ----------------------------------------------------------------------------- FID


def test_fid_of_a_set_against_itself_is_zero(tmp_path: Path) -> None:
    rel = _write(tmp_path, "img", 12, seed=3)
    fid = get_metric("fid", extractor="tiny-image", bootstrap=0)
    out = fid.corpus_score([{"media": [p]} for p in rel], [], _ctxs(tmp_path, 12), all_targets=[str(tmp_path / p) for p in rel])
    score = out["fid_tiny_image"]
    assert abs(score.value) < 1e-6 and score.n == 12 and score.ci_low is None


def test_fid_matches_torchmetrics_and_has_bootstrap_ci(sets: tuple[Path, list[str], list[str]]) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    root, gen, ref = sets
    fid = get_metric("fid", extractor="tiny-image", bootstrap=50)
    score = fid.corpus_score([{"media": [p]} for p in gen], [], _ctxs(root, 40), seed=0, all_targets=ref)["fid_tiny_image"]
    ext = TinyImageExtractor()
    tm = FrechetInceptionDistance(feature=Identity(ext.dim))
    tm.update(torch.from_numpy(ext.features(ref)), real=True)
    tm.update(torch.from_numpy(ext.features([str(root / p) for p in gen])), real=False)
    expected = float(tm.compute())
    assert expected > 0.1  # noise vs squares: a real distance, not a degenerate 0
    assert score.value == pytest.approx(expected, rel=1e-6)
    assert score.n == 40 and score.ci_method == "bootstrap_se"
    assert score.ci_low is not None and score.ci_high is not None and score.ci_low < score.ci_high and score.stderr > 0


def test_reference_features_are_cached(sets: tuple[Path, list[str], list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    root, gen, _ = sets
    # references no other test uses (the cache lives for the whole session)
    ref = [str(root / p) for p in _write(root, "ref-cache", 40, seed=99)]
    fid = get_metric("fid", extractor="tiny-image", bootstrap=0)
    ref_calls: list[int] = []
    original = fid.extractor.features

    def counting(items: list) -> np.ndarray:
        if set(items) & set(ref):
            ref_calls.append(len(items))
        return original(items)

    monkeypatch.setattr(fid.extractor, "features", counting)
    parsed = [{"media": [p]} for p in gen]
    first = fid.corpus_score(parsed, [], _ctxs(root, 40), all_targets=ref)
    assert fid.reference_from_cache is False and ref_calls == [40]
    # A fresh metric, the references in another order: the same cache entry, no extractor call.
    again = get_metric("fid", extractor="tiny-image", bootstrap=0)
    second = again.corpus_score(parsed, [], _ctxs(root, 40), all_targets=ref[::-1])
    assert again.reference_from_cache is True and ref_calls == [40]
    assert second["fid_tiny_image"].value == pytest.approx(first["fid_tiny_image"].value, abs=1e-9)


def test_samples_without_media_are_left_out(sets: tuple[Path, list[str], list[str]]) -> None:
    root, gen, ref = sets
    parsed = [{"media": [p]} if i % 4 else {"media": [], "text": "no image"} for i, p in enumerate(gen)]
    out = get_metric("kid", extractor="tiny-image").corpus_score(parsed, [], _ctxs(root, 40), all_targets=ref)
    assert out["kid_tiny_image"].n == 30
    with pytest.raises(ValueError, match="at least 2 generated images, got 1"):
        get_metric("fid", extractor="tiny-image").corpus_score(
            [{"media": [gen[0]]}, {"media": []}], [], _ctxs(root, 2), all_targets=ref[:2]
        )


def test_bad_references_are_named(sets: tuple[Path, list[str], list[str]]) -> None:
    root, gen, ref = sets
    fid = get_metric("fid", extractor="tiny-image")
    parsed = [{"media": [p]} for p in gen[:5]]
    with pytest.raises(MediaError, match=r"reference 3 of 5: image outside the dataset root: x\.png"):
        fid.corpus_score(parsed, [], _ctxs(root, 5), all_targets=[*ref[:2], {"error": "image outside the dataset root: x.png"}, *ref[3:5]])
    with pytest.raises(MediaError, match=r"reference 2 of 3: .*missing\.png"):
        fid.corpus_score(parsed, [], _ctxs(root, 5), all_targets=[ref[0], str(root / "missing.png"), ref[1]])
    with pytest.raises(MediaError, match="reference 1 of 2: no image"):
        fid.corpus_score(parsed, [], _ctxs(root, 5), all_targets=[None, ref[0]])
    with pytest.raises(MediaError, match="reference 2 of 2: expected a file path or encoded bytes, got list"):
        fid.corpus_score(parsed, [], _ctxs(root, 5), all_targets=[ref[0], [ref[1], ref[2]]])


def test_metric_arguments_are_checked_when_built() -> None:
    with pytest.raises(ExtractorError, match="unknown feature extractor 'inceptoin'"):
        get_metric("fid", extractor="inceptoin")
    with pytest.raises(MetricArgsError, match=r"unknown argument\(s\) \['bootstap'\]"):
        get_metric("fid", extractor="tiny-image", bootstap=10)
    with pytest.raises(MetricArgsError, match="subset_size must be an integer >= 2"):
        get_metric("kid", extractor="tiny-image", subset_size=1)
    with pytest.raises(MetricArgsError, match="reads video, not image"):
        get_metric("fid", extractor="tiny-video")


# ----------------------------------------------------------------------------- KID


def test_polynomial_mmd_matches_torchmetrics() -> None:
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)), rng.normal(0.3, 1.2, size=(30, 8))
    assert polynomial_mmd2(x, y) == pytest.approx(float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y))), rel=1e-10)


def test_kid_matches_torchmetrics(sets: tuple[Path, list[str], list[str]]) -> None:
    from torchmetrics.image.kid import KernelInceptionDistance

    root, gen, ref = sets
    # subset_size over the set sizes is capped: every subset is the whole set, so torchmetrics
    # (subset_size = 40, random permutations of all 40) must give the same mean and zero spread.
    out = get_metric("kid", extractor="tiny-image", subsets=3).corpus_score(
        [{"media": [p]} for p in gen], [], _ctxs(root, 40), all_targets=ref
    )
    ext = TinyImageExtractor()
    tm = KernelInceptionDistance(feature=Identity(ext.dim), subsets=3, subset_size=40)
    tm.update(torch.from_numpy(ext.features(ref)), real=True)
    tm.update(torch.from_numpy(ext.features([str(root / p) for p in gen])), real=False)
    mean, std = tm.compute()
    assert float(mean) > 1e-4
    assert out["kid_tiny_image"].value == pytest.approx(float(mean), rel=1e-9)
    assert out["kid_tiny_image"].stderr == pytest.approx(float(std), abs=1e-12)
    assert out["kid_tiny_image"].n == 40


def test_kid_subsets_are_seeded() -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(50, 4)), rng.normal(0.5, 1.0, size=(60, 4))
    a, b, c = kid_subsets(real, fake, 20, 10, seed=1), kid_subsets(real, fake, 20, 10, seed=1), kid_subsets(real, fake, 20, 10, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and a.std() > 0
    # the full-set MMD lies within the spread of the subset estimates
    assert abs(a.mean() - polynomial_mmd2(real[:50], fake[:50])) < 4 * a.std()


# ----------------------------------------------------------------------------- Inception Score


def test_inception_score_matches_torchmetrics() -> None:
    from torchmetrics.image.inception import InceptionScore as TMInceptionScore

    logits = torch.from_numpy(np.random.default_rng(0).normal(0.0, 3.0, size=(20, 7)))
    torch.manual_seed(5)
    perm = torch.randperm(20)  # the permutation torchmetrics' compute() draws next
    tm = TMInceptionScore(feature=Identity(7), splits=4)
    tm.update(logits)
    torch.manual_seed(5)
    mean, std = tm.compute()
    ours = inception_score(logits[perm].numpy(), splits=4, seed=None)
    assert ours.mean() == pytest.approx(float(mean), rel=1e-10)
    assert ours.std() * math.sqrt(4 / 3) == pytest.approx(float(std), rel=1e-8)  # torchmetrics: ddof=1
    # bounds: 1 <= IS <= number of classes
    assert ours.min() >= 1.0 and ours.max() <= 7.0


@pytest.mark.filterwarnings("ignore:std\\(\\):UserWarning")  # torchmetrics' std of one split
def test_inception_score_metric(tmp_path: Path) -> None:
    from torchmetrics.image.inception import InceptionScore as TMInceptionScore

    rel = _write(tmp_path, "gen", 12, seed=4)
    parsed = [{"media": [p]} for p in rel] + [{"media": []}]
    one = get_metric("inception_score", extractor="tiny-image", splits=1).corpus_score(parsed, [], _ctxs(tmp_path, 13))
    tm = TMInceptionScore(feature=Identity(10), splits=1)
    tm.update(torch.from_numpy(TinyImageExtractor().logits([str(tmp_path / p) for p in rel])))
    assert one["inception_score_tiny_image"].value == pytest.approx(float(tm.compute()[0]), rel=1e-10)
    assert one["inception_score_tiny_image"].n == 12
    many = get_metric("inception_score", extractor="tiny-image", splits=50).corpus_score(parsed, [], _ctxs(tmp_path, 13), seed=3)
    assert many["inception_score_tiny_image"].value == pytest.approx(1.0)  # splits capped at 12: one image each, IS = 1


# ----------------------------------------------------------------------------- FID Inception network

# Verified against the public ports (mseitzer/pytorch-fid src/pytorch_fid/inception.py, which
# patches torchvision's Inception3 built with num_classes=1008, aux_logits=False; and
# toshas/torch-fidelity feature_extractor_inceptionv3.py):
EXPECTED_BLOCKS = [
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c", "fc",
]  # fmt: skip
EXPECTED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.bn.bias": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def test_inception_state_dict_layout() -> None:
    state = inc.FIDInceptionV3().state_dict()
    assert list(dict.fromkeys(k.split(".")[0] for k in state)) == EXPECTED_BLOCKS
    assert sum(k.endswith(".conv.weight") for k in state) == 94  # InceptionV3 without the aux head
    assert not any(k.endswith("conv.bias") or k.startswith("AuxLogits") for k in state)
    for key, shape in EXPECTED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert inc.FIDInceptionV3().Mixed_5b.branch_pool.bn.eps == 0.001


def test_inception_weights_load_through_the_path(tmp_path: Path) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = inc.FIDInceptionV3()
        for m in net.modules():  # non-trivial BatchNorm statistics, so a lost buffer would show
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    # Old checkpoints have no num_batches_tracked buffers: they must load all the same.
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = tmp_path / inc.WEIGHTS_FILE
    torch.save(state, weights)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (299, 299, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "small.png")

    ext = get_extractor("inception", {"inception_weights": str(weights), "clip_model": "ignored"})
    assert ext.id.startswith("inception-fid-v1:sha256:") and ext.dim == 2048
    feats, logits = ext.features_and_logits([str(tmp_path / "big.png"), (tmp_path / "small.png").read_bytes()])
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008) and feats.dtype == np.float64
    # 299x299 input: no resize, then (x - 128) / 128, then the network
    x = (torch.from_numpy(big).permute(2, 0, 1)[None].float() - 128) / 128
    with torch.inference_mode():
        pool, _ = net.eval()(x)
    np.testing.assert_allclose(feats[0], pool[0].double().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, feats @ net.fc.weight.detach().double().numpy().T, rtol=1e-4, atol=1e-4)  # no bias

    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ExtractorWeightsError, match=r"wrong\.pth: not the FID Inception state dict"):
        inc.InceptionFID(inception_weights=str(tmp_path / "wrong.pth")).features([str(tmp_path / "big.png")])


def test_inception_weights_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ExtractorWeightsError, match=r"inception_weights=.*nope\.pth: no such file"):
        inc.InceptionFID(inception_weights=str(tmp_path / "nope.pth"))
    real_find_spec = inc.importlib.util.find_spec
    monkeypatch.setattr(inc.importlib.util, "find_spec", lambda name, *a: None if name == "torch_fidelity" else real_find_spec(name, *a))
    with pytest.raises(ExtractorWeightsError) as err:
        get_metric("fid")  # built before the model loads: the error comes at once
    assert "--metric-args inception_weights=PATH" in str(err.value) and inc.WEIGHTS_URL in str(err.value)


def test_inception_falls_back_to_torch_fidelity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without inception_weights, torch-fidelity's extractor is used when installed: called with
    uint8 NCHW images at their own size, returning ("2048", "logits_unbiased") in that order.
    (A stand-in module here: torch-fidelity is not a dependency.)"""
    import importlib.machinery
    import sys
    import types

    seen: list[tuple[torch.dtype, tuple[int, ...]]] = []

    class FakeExtractor(torch.nn.Module):
        def __init__(self, name: str, features_list: list[str]) -> None:
            super().__init__()
            assert name == "inception-v3-compat" and features_list == ["2048", "logits_unbiased"]

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append((x.dtype, tuple(x.shape)))
            m = x.float().mean()
            return m.repeat(x.shape[0], 2048), -m.repeat(x.shape[0], 1008)

    package = types.ModuleType("torch_fidelity")
    package.__spec__ = importlib.machinery.ModuleSpec("torch_fidelity", None)
    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = FakeExtractor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_fidelity", package)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    ext = inc.InceptionFID()
    assert ext.id == "inception-fid-v1:torch-fidelity"
    feats, logits = ext.features_and_logits([str(tmp_path / "a.png"), str(tmp_path / "b.png")])
    assert seen == [(torch.uint8, (1, 3, 20, 30)), (torch.uint8, (1, 3, 8, 8))]
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert feats[0, 0] == pytest.approx(np.asarray(Image.open(tmp_path / "a.png")).mean()) and logits[1, 0] == -feats[1, 0]


def _tf1_resize_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TensorFlow 1.x resize_bilinear (align_corners=False), written out pixel by pixel."""
    h, w = img.shape
    out = np.empty((out_h, out_w))
    for i in range(out_h):
        y = i * (h / out_h)
        y0 = math.floor(y)
        y1, dy = min(y0 + 1, h - 1), y - y0
        for j in range(out_w):
            x = j * (w / out_w)
            x0 = math.floor(x)
            x1, dx = min(x0 + 1, w - 1), x - x0
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * dx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * dx
            out[i, j] = top + (bottom - top) * dy
    return out


def test_tf1_bilinear_resize() -> None:
    img = np.random.default_rng(0).uniform(0, 255, (7, 10))
    x = torch.from_numpy(img)[None, None]
    for h, w in ((13, 9), (3, 4), (7, 10), (20, 31)):
        np.testing.assert_allclose(inc.resize_bilinear_tf1(x, h, w)[0, 0].numpy(), _tf1_resize_reference(img, h, w), rtol=1e-5, atol=1e-4)
    # No half-pixel offset: halving picks the even pixels exactly (PyTorch's default would average).
    even = torch.arange(64.0).view(1, 1, 8, 8)
    assert torch.equal(inc.resize_bilinear_tf1(even, 4, 4), even[:, :, ::2, ::2])


# ----------------------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def clip_dir() -> Path:
    return tiny_clip_dir()


def _reference_clip_scores(clip_dir: Path, images: list[Image.Image], captions: list[str]) -> np.ndarray:
    """Cosines from CLIPModel's own forward pass (its normalised image_embeds / text_embeds)."""
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(clip_dir).eval()
    tok = CLIPTokenizer.from_pretrained(clip_dir)
    proc = CLIPImageProcessorPil.from_pretrained(clip_dir)
    cos = []
    for image, caption in zip(images, captions, strict=True):  # one at a time: no padding involved
        with torch.inference_mode():
            out = model(
                input_ids=tok([caption], return_tensors="pt")["input_ids"],
                pixel_values=proc(images=[image], return_tensors="pt")["pixel_values"],
            )
        cos.append(float((out.image_embeds[0].double() * out.text_embeds[0].double()).sum()))
    return np.asarray(cos)


def test_clip_score_matches_the_models_own_embeddings(tmp_path: Path, clip_dir: Path) -> None:
    rel = _write(tmp_path, "gen", 6, seed=5)
    captions = ["a red square", "a blue circle on a plain background", "two green triangles", "Yellow star!", "a", "seven brown lines"]
    metric = get_metric("clip_score", caption="{{ caption }}", clip_model=str(clip_dir), feature_batch_size="4")
    parsed = [{"media": [p]} for p in rel]
    scores = metric.score_batch(parsed, [None] * 6, _ctxs(tmp_path, 6, captions))
    cos = _reference_clip_scores(clip_dir, [Image.open(tmp_path / p).convert("RGB") for p in rel], captions)
    assert [s["clip_score"] for s in scores] == pytest.approx(list(100.0 * np.maximum(cos, 0.0)), abs=1e-4)
    assert (cos > 0).any()  # the test would be empty if every cosine were clamped to 0
    # Hessel et al.'s scale, and a caption given as a column name
    hessel = get_metric("clip_score", caption="caption", scale=2.5, clip_model=str(clip_dir))
    got = [s["clip_score"] for s in hessel.score_batch(parsed, [None] * 6, _ctxs(tmp_path, 6, captions))]
    assert got == pytest.approx(list(2.5 * np.maximum(cos, 0.0)), abs=1e-5)
    assert metric.kwargs["clip_model"] == str(clip_dir)


def test_clip_score_invariances(tmp_path: Path, clip_dir: Path) -> None:
    rel = _write(tmp_path, "gen", 5, seed=6)
    parsed = [{"media": [rel[0]]}, {"media": [rel[1]]}, {"media": []}, {"media": [rel[0]]}, {"media": [rel[2]]}, {"media": [rel[3]]}]
    captions = ["a red square", "blue", "unused", "a red square", "green star", "a long caption " * 3]
    ctxs = _ctxs(tmp_path, 6, captions)
    one = get_metric("clip_score", caption="caption", clip_model=str(clip_dir), feature_batch_size=1).score_batch(parsed, [None] * 6, ctxs)
    big = get_metric("clip_score", caption="caption", clip_model=str(clip_dir), feature_batch_size=8).score_batch(parsed, [None] * 6, ctxs)
    assert one[2] == {} and big[2] == {}  # no generated image: no value
    assert one[0]["clip_score"] == one[3]["clip_score"]  # same image + caption, same score
    for a, b in zip(one, big, strict=True):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-4) for k in a)
    single = get_metric("clip_score", caption="caption", clip_model=str(clip_dir)).score(parsed[4], None, ctxs[4])
    assert single["clip_score"] == pytest.approx(big[4]["clip_score"], abs=1e-4)


def test_clip_texts_are_truncated_to_the_context(clip_dir: Path) -> None:
    emb = ClipEmbedder(str(clip_dir))
    assert emb.max_text_tokens() == 77
    long = "a red square on a plain background " * 30
    a, b = emb.text_embeddings([long, long + " and a totally different ending about a blue circle"])
    assert np.allclose(a, b) and np.linalg.norm(a) == pytest.approx(1.0)


def test_clip_caption_errors(tmp_path: Path, clip_dir: Path) -> None:
    with pytest.raises(MetricArgsError, match="needs caption"):
        get_metric("clip_score", clip_model=str(clip_dir))
    rel = _write(tmp_path, "gen", 1, seed=7)
    ctx = ParseContext(doc_id="d7", root=tmp_path, doc={"captions": ["x", "y"]})
    with pytest.raises(ValueError, match=r"d7: clip_score caption column 'caption' is not in the document \(columns: \['captions'\]\)"):
        get_metric("clip_score", caption="caption", clip_model=str(clip_dir)).score({"media": rel}, None, ctx)
    with pytest.raises(ValueError, match=r"holds list, not a string; pick one with a template"):
        get_metric("clip_score", caption="captions", clip_model=str(clip_dir)).score({"media": rel}, None, ctx)
    first = get_metric("clip_score", caption="{{ captions[0] }}", clip_model=str(clip_dir)).score({"media": rel}, None, ctx)
    assert set(first) == {"clip_score"}


def test_clip_weights_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ExtractorWeightsError, match=r"clip_model=.*no-such-dir: no such directory"):
        get_metric("clip_score", caption="caption", clip_model=str(tmp_path / "no-such-dir"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = ClipEmbedder("mmeval-tests/no-such-clip")  # a hub id: resolved at first use
    with pytest.raises(ExtractorWeightsError, match="clip_model=mmeval-tests/no-such-clip: cannot load a CLIP checkpoint"):
        embedder.text_embeddings(["x"])


def test_clip_image_features_extractor(tmp_path: Path, clip_dir: Path) -> None:
    rel = _write(tmp_path, "img", 3, seed=8)
    ext = get_extractor("clip", {"clip_model": str(clip_dir), "feature_batch_size": "2", "inception_weights": "ignored"})
    assert isinstance(ext, ClipImageFeatures) and ext.id.startswith("clip-image-v1:local-")
    feats = ext.features([str(tmp_path / p) for p in rel])
    assert feats.shape == (3, ext.dim) == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0)
    # clip-FID goes through the same FID code, under its own key
    out = get_metric("fid", extractor="clip", clip_model=str(clip_dir), bootstrap=0).corpus_score(
        [{"media": [p]} for p in rel], [], _ctxs(tmp_path, 3), all_targets=[str(tmp_path / p) for p in rel]
    )
    assert abs(out["fid_clip"].value) < 1e-6
