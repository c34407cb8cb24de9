"""Text-to-audio quality metrics: FAD (tiny-audio, VGGish, CLAP, module: extractors) and the
CLAP score, checked against independent numpy/scipy/transformers computations."""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg

from mmeval.media.audio import encode_wav, resample
from mmeval.metrics.audio_gen import FAD, CLAPScore
from mmeval.metrics.base import MetricArgsError, ParseContext
from mmeval.metrics.extractors import vggish
from mmeval.metrics.extractors.clap import ClapAudioFeatures, ClapEmbedder
from mmeval.metrics.extractors.tiny_audio import TinyAudioExtractor
from mmeval.metrics.features import ExtractorWeightsError, reference_features
from mmeval.metrics.tiny_clap import tiny_clap_dir
from mmeval.types import MediaError

RATE = 16_000


def tone(freq: float, seconds: float, amp: float = 0.5, rate: int = RATE, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t) + noise * np.random.default_rng(seed).standard_normal(t.shape[0])


def write_clips(root: Path, sub: str, clips: list[np.ndarray], rate: int = RATE) -> list[str]:
    """WAV files under root/sub; returns run-relative paths."""
    (root / sub).mkdir(parents=True, exist_ok=True)
    rel = []
    for i, x in enumerate(clips):
        (root / sub / f"{i}.wav").write_bytes(encode_wav(x, rate))
        rel.append(f"{sub}/{i}.wav")
    return rel


def tone_set(n: int, seconds: float, base: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        tone(base * rng.uniform(0.7, 1.4), seconds, amp=rng.uniform(0.2, 0.8), noise=rng.uniform(0, 0.2), seed=seed + i) for i in range(n)
    ]


def ctxs_for(root: Path, n: int, docs: list[dict] | None = None) -> list[ParseContext]:
    return [ParseContext(doc_id=str(i), doc=(docs[i] if docs else {}), root=root) for i in range(n)]


def scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook Fréchet distance with scipy.linalg.sqrtm, independent of mmeval.metrics.frechet."""
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------- FAD, tiny-audio


@pytest.fixture(scope="module")
def tone_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """40 generated and 40 reference clips (more than the 32 feature dims: full-rank covariances)."""
    root = tmp_path_factory.mktemp("fad")
    gen = write_clips(root, "gen", tone_set(40, 0.3, 500.0, seed=1))
    ref = write_clips(root, "ref", tone_set(40, 0.3, 900.0, seed=2))
    return root, gen, [str(root / r) for r in ref]


def test_fad_matches_scipy_and_counts_generated_clips(tone_sets: Any) -> None:
    root, gen, refs = tone_sets
    parsed: list[Any] = [{"media": [g]} for g in gen] + [{"media": [], "text": "no audio"}]
    metric = FAD(extractor="tiny-audio", bootstrap=0)
    out = metric.corpus_score(parsed, [*refs, refs[0]], ctxs_for(root, len(parsed)), all_targets=[*refs, refs[0]])
    score = out["fad_tiny_audio"]
    ex = TinyAudioExtractor()
    expected = scipy_fd(ex.features([str(root / g) for g in gen]), ex.features(refs))
    assert expected > 0.01
    assert score.value == pytest.approx(expected, rel=1e-6)
    assert score.n == 40  # the no-media sample is left out
    assert score.ci_low is None and score.ci_method == "none"


def test_fad_of_a_set_against_itself_is_zero(tone_sets: Any) -> None:
    root, gen, _ = tone_sets
    refs = [str(root / g) for g in gen]
    out = FAD(extractor="tiny-audio", bootstrap=0).corpus_score(
        [{"media": [g]} for g in gen], refs, ctxs_for(root, len(gen)), all_targets=refs
    )
    assert abs(out["fad_tiny_audio"].value) < 1e-6


def test_fad_bootstrap_ci_is_seeded(tone_sets: Any) -> None:
    root, gen, refs = tone_sets
    parsed = [{"media": [g]} for g in gen]
    metric = FAD(extractor="tiny-audio", bootstrap=50)
    a = metric.corpus_score(parsed, refs, ctxs_for(root, len(gen)), seed=3, all_targets=refs)["fad_tiny_audio"]
    b = metric.corpus_score(parsed, refs, ctxs_for(root, len(gen)), seed=3, all_targets=refs)["fad_tiny_audio"]
    assert a.ci_method == "bootstrap_se" and a.stderr is not None and a.stderr > 0
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    c = metric.corpus_score(parsed, refs, ctxs_for(root, len(gen)), seed=4, all_targets=refs)["fad_tiny_audio"]
    assert a.ci_low < a.ci_high and c.ci_low != a.ci_low and c.value == a.value


def test_reference_features_are_cached(tone_sets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    root, gen, refs = tone_sets
    refs = [*refs[:30], refs[0]]  # a duplicate clip counts once
    metric = FAD(extractor="tiny-audio", bootstrap=0)
    calls: list[list[Any]] = []
    original = metric.extractor.features
    monkeypatch.setattr(metric.extractor, "features", lambda items: calls.append(list(items)) or original(items))
    parsed = [{"media": [g]} for g in gen]
    first = metric.corpus_score(parsed, refs, ctxs_for(root, len(gen)), all_targets=refs)
    ref_calls = [c for c in calls if set(c) <= set(refs)]
    assert len(ref_calls) == 1 and len(ref_calls[0]) == 30
    calls.clear()
    second = metric.corpus_score(parsed, refs, ctxs_for(root, len(gen)), all_targets=refs)
    assert all(not (set(c) & set(refs)) for c in calls)  # only the generated clips were embedded
    assert second["fad_tiny_audio"].value == first["fad_tiny_audio"].value
    feats, hit = reference_features(TinyAudioExtractor(), list(reversed(refs[:30])))
    assert hit and feats.shape == (30, 32)


def test_unreadable_reference_is_a_media_error_naming_it(tone_sets: Any, tmp_path: Path) -> None:
    root, gen, refs = tone_sets
    missing = str(tmp_path / "gone.wav")
    with pytest.raises(MediaError, match=r"gone\.wav"):
        FAD(extractor="tiny-audio").corpus_score(
            [{"media": [g]} for g in gen], refs, ctxs_for(root, len(gen)), all_targets=[*refs, missing]
        )
    with pytest.raises(MediaError, match="outside the dataset root"):
        FAD(extractor="tiny-audio").corpus_score(
            [{"media": [g]} for g in gen],
            refs,
            ctxs_for(root, len(gen)),
            all_targets=[*refs, {"error": "media path outside the dataset root"}],
        )


def test_fad_with_fewer_than_two_generated_clips_has_no_value(tone_sets: Any) -> None:
    root, gen, refs = tone_sets
    out = FAD(extractor="tiny-audio").corpus_score([{"media": [gen[0]]}, {"media": []}], refs[:2], ctxs_for(root, 2), all_targets=refs)
    assert np.isnan(out["fad_tiny_audio"].value) and out["fad_tiny_audio"].n == 1


def test_fad_argument_errors() -> None:
    with pytest.raises(MetricArgsError, match="unknown feature extractor"):
        FAD(extractor="vggsh")
    with pytest.raises(MetricArgsError, match="unknown argument"):
        FAD(extractor="tiny-audio", bootstrapp=10)
    with pytest.raises(MetricArgsError, match="embeds image, not audio"):
        FAD(extractor="module:tests.test_audio_gen_metrics:make_image_extractor")


# --------------------------------------------------------------------------- module: hook


class RmsExtractor:
    """A user's extractor: per-clip RMS and peak in 8 time slices (any object with this interface)."""

    modality = "audio"
    dim = 16

    def __init__(self, **kwargs: Any) -> None:
        self.id = "test-rms-v1"

    def features(self, items: list[Any]) -> np.ndarray:
        from mmeval.media.audio import decode_audio
        from mmeval.metrics.features import media_part

        rows = []
        for src in items:
            parts = np.array_split(decode_audio(media_part("audio", src), RATE)[0].astype(np.float64), 8)
            rows.append([np.sqrt(np.mean(p**2)) for p in parts] + [np.abs(p).max() for p in parts])
        return np.asarray(rows)


def make_rms_extractor(**kwargs: Any) -> RmsExtractor:
    return RmsExtractor(**kwargs)


def make_image_extractor(**kwargs: Any) -> Any:
    ex = RmsExtractor()
    ex.modality = "image"
    return ex


def test_module_extractor_plugs_into_fad(tone_sets: Any) -> None:
    root, gen, refs = tone_sets
    metric = FAD(extractor="module:tests.test_audio_gen_metrics:make_rms_extractor", bootstrap=0, device="cpu")
    out = metric.corpus_score([{"media": [g]} for g in gen], refs, ctxs_for(root, len(gen)), all_targets=refs)
    ex = RmsExtractor()
    assert out["fad_make_rms_extractor"].value == pytest.approx(
        scipy_fd(ex.features([str(root / g) for g in gen]), ex.features(refs)), rel=1e-6
    )
    assert FAD(extractor="module:tests.test_audio_gen_metrics:make_rms_extractor", label="rms").key == "fad_rms"


# --------------------------------------------------------------------------- VGGish

# The PyTorch port's state dict (harritaylor/torchvggish, vggish-10086976.pth), written out by hand.
PORT_LAYOUT = {
    "features.0.weight": (64, 1, 3, 3),
    "features.3.weight": (128, 64, 3, 3),
    "features.6.weight": (256, 128, 3, 3),
    "features.8.weight": (256, 256, 3, 3),
    "features.11.weight": (512, 256, 3, 3),
    "features.13.weight": (512, 512, 3, 3),
    "embeddings.0.weight": (4096, 512 * 4 * 6),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.4.weight": (128, 4096),
}


def test_vggish_key_and_shape_layout() -> None:
    layout = vggish.expected_layout()
    expected = dict(PORT_LAYOUT)
    expected.update({k.replace("weight", "bias"): (v[0],) for k, v in PORT_LAYOUT.items()})
    assert layout == expected


def test_vggish_missing_weights_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtractorWeightsError, match=r"--metric-args vggish_weights=PATH.*vggish-10086976\.pth"):
        vggish.VGGish()
    with pytest.raises(ExtractorWeightsError, match=r"nowhere\.pth: no such file"):
        vggish.VGGish(vggish_weights=str(tmp_path / "nowhere.pth"))
    with pytest.raises(MetricArgsError, match="vggish_weights=PATH"):
        FAD(extractor="vggish")  # the metric's default extractor, no path given: fails at construction


def test_vggish_frontend_shapes_and_mel_bands() -> None:
    clip = tone(1000.0, 2.0)
    mel = vggish.log_mel(clip)
    assert mel.shape == (1 + (32000 - 400) // 160, 64)
    assert vggish.examples(clip, "google").shape == (3, 96, 64)  # 1 s windows at 0, 0.5 and 1.0 s
    assert vggish.examples(clip, "torchvggish").shape == (2, 96, 64)  # 198 frames -> two 0.96 s examples
    assert vggish.examples(tone(1000.0, 0.2), "google").shape == (1, 96, 64)  # short clips padded to one window
    # A 1 kHz tone peaks in the band whose HTK-mel centre is nearest 1 kHz.
    lo, hi = 1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700)
    centres_hz = 700 * np.expm1(np.linspace(lo, hi, 66)[1:-1] / 1127)
    assert int(mel.mean(axis=0).argmax()) == int(np.abs(centres_hz - 1000).argmin())
    # Silence is log(0.01) everywhere; only FFT bins inside 125-7500 Hz carry weight (DC none).
    assert np.allclose(vggish.log_mel(np.zeros(4000)), np.log(0.01))
    weights, bin_hz = vggish.mel_matrix(), np.linspace(0, 8000, 257)
    assert weights.shape == (257, 64) and not weights[(bin_hz <= 125) | (bin_hz >= 7500)].any()
    # "google" framing normalises loudness (gain capped at +20 dB); "torchvggish" does not.
    assert np.allclose(vggish.examples(0.3 * clip, "google"), vggish.examples(1.8 * clip, "google"))  # peaks 0.15, 0.9 -> 1
    assert not np.allclose(vggish.examples(0.02 * clip, "google"), vggish.examples(1.8 * clip, "google"))  # peak 0.01: only x10
    assert not np.allclose(vggish.examples(0.3 * clip, "torchvggish"), vggish.examples(1.8 * clip, "torchvggish"))


@pytest.fixture(scope="module")
def vggish_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vggish") / "vggish-random.pth"
    torch.save(vggish.build_network().state_dict(), path)
    return path


def test_vggish_random_weights_load_from_path(vggish_weights: Path, tmp_path: Path) -> None:
    import torch

    root = tmp_path
    rel = write_clips(root, "gen", [tone(440.0, 2.0, rate=22_050), tone(3000.0, 1.0, rate=22_050, noise=0.1)], rate=22_050)
    ex = vggish.VGGish(vggish_weights=str(vggish_weights), feature_batch_size=1)
    frames = ex.clip_frames([str(root / r) for r in rel])
    assert [f.shape for f in frames] == [(3, 128), (1, 128)]
    # Independently: the saved state dict in a fresh network, on this module's frontend.
    net = vggish.build_network()
    net.load_state_dict(torch.load(vggish_weights, weights_only=True))
    from mmeval.media.audio import decode_audio
    from mmeval.types import MediaPart

    x, _ = decode_audio(MediaPart("audio", path=str(root / rel[0])), 16_000)
    with torch.no_grad():
        direct = net.eval()(torch.as_tensor(vggish.examples(x), dtype=torch.float32)[:, None]).double().numpy()
    assert np.allclose(frames[0], direct, atol=1e-4)
    ex.batch_size = 64  # all windows in one forward pass
    batched = ex.clip_frames([str(root / r) for r in rel])
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(frames, batched, strict=True))
    assert ex.features([str(root / r) for r in rel]).shape == (2, 128)

    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, bad)
    with pytest.raises(ExtractorWeightsError, match=r"bad\.pth is not a VGGish checkpoint.*missing \['embeddings\.0\.bias'"):
        vggish.VGGish(vggish_weights=str(bad)).clip_frames([str(root / rel[0])])
    with torch.device("meta"):
        state = vggish.build_network().state_dict()
    state["embeddings.4.weight"] = torch.empty(64, 4096, device="meta")
    with pytest.raises(ExtractorWeightsError, match=r"embeddings\.4\.weight is \(64, 4096\), expected \(128, 4096\)"):
        vggish.check_layout(state, "x.pth")


def test_fad_vggish_fits_window_embeddings(vggish_weights: Path, tmp_path: Path) -> None:
    gen = write_clips(tmp_path, "gen", [tone(300.0 * (i + 1), 1.5, noise=0.05, seed=i) for i in range(4)])
    refs = [str(tmp_path / r) for r in write_clips(tmp_path, "ref", [tone(250.0 * (i + 2), 1.0, seed=9 + i) for i in range(3)])]
    metric = FAD(extractor="vggish", vggish_weights=str(vggish_weights), bootstrap=5)
    out = metric.corpus_score([{"media": [g]} for g in gen], refs, ctxs_for(tmp_path, 4), all_targets=refs)["fad_vggish"]
    ex = metric.extractor
    gen_windows = np.concatenate(ex.clip_frames([str(tmp_path / g) for g in gen]))
    ref_windows = np.concatenate(ex.clip_frames(refs))
    assert gen_windows.shape == (4 * 2, 128) and ref_windows.shape == (3, 128)  # 1.5 s: 2 windows; 1 s: 1
    assert out.n == 4 and out.ci_method == "bootstrap_se"
    assert out.value == pytest.approx(
        float(np.sum((gen_windows.mean(0) - ref_windows.mean(0)) ** 2)) + _trace_terms(gen_windows, ref_windows), rel=1e-6
    )
    same = metric.corpus_score([{"media": [g]} for g in gen], refs, ctxs_for(tmp_path, 4), all_targets=[str(tmp_path / g) for g in gen])
    assert abs(same["fad_vggish"].value) < 1e-6


def _trace_terms(a: np.ndarray, b: np.ndarray) -> float:
    """tr(S1) + tr(S2) - 2 tr((S1 S2)^½) from the eigenvalues of S1 S2 (rank-deficient here, so
    not scipy.sqrtm: the nonzero eigenvalues of S1 S2 are real and non-negative)."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)
    return float(np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum())


# --------------------------------------------------------------------------- CLAP


@pytest.fixture(scope="module")
def clap_dir() -> Path:
    return tiny_clap_dir()


def test_tiny_clap_builds_and_embeds_fast(clap_dir: Path) -> None:
    start = time.perf_counter()
    emb = ClapEmbedder(str(clap_dir))
    audio = emb.audio_embeddings([(tone(440.0, 1.0), RATE), (tone(440.0, 1.0, rate=48_000), 48_000)])
    text = emb.text_embeddings(["a dog barks", "a red circle"])
    assert time.perf_counter() - start < 10
    assert audio.shape == (2, 16) and text.shape == (2, 16) and audio.dtype == np.float64
    assert np.allclose(np.linalg.norm(audio, axis=1), 1) and np.allclose(np.linalg.norm(text, axis=1), 1)
    assert audio[0] @ audio[1] > 0.99  # the same tone at 48 kHz is resampled to the extractor's 16 kHz
    assert text[0] @ text[1] < 0.99
    # Past the extractor's 2 s window, a clip is cut to its first window (not a random crop).
    long = tone(440.0, 3.0, noise=0.2)
    again = emb.audio_embeddings([(long, RATE), (long[: 2 * RATE], RATE), (long, RATE)])
    assert np.allclose(again[0], again[1]) and np.allclose(again[0], again[2])


def test_clap_bad_paths_name_clap_model(tmp_path: Path) -> None:
    with pytest.raises(ExtractorWeightsError, match=r"clap_model=.*no such checkpoint directory"):
        ClapEmbedder(str(tmp_path / "missing"))
    with pytest.raises(ExtractorWeightsError, match=r"clap_model=.*no config\.json"):
        ClapEmbedder(str(tmp_path))
    with pytest.raises(MetricArgsError, match="clap_model="):
        CLAPScore(clap_model=str(tmp_path / "missing"))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV with the standard library, independently of mmeval.media."""
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0, w.getframerate()


def manual_clap_cosines(clap_dir: Path, clips: list[tuple[np.ndarray, int]], captions: list[str]) -> np.ndarray:
    """CLAP cosines straight from transformers, one clip at a time."""
    import torch
    from transformers import ClapModel, ClapProcessor

    model, proc = ClapModel.from_pretrained(clap_dir).eval(), ClapProcessor.from_pretrained(clap_dir)
    rate = proc.feature_extractor.sampling_rate
    out = []
    for (x, r), caption in zip(clips, captions, strict=True):
        feats = proc.feature_extractor(resample(x, r, rate), sampling_rate=rate, return_tensors="pt")
        tokens = proc.tokenizer([caption], return_tensors="pt")
        with torch.no_grad():
            a = model.get_audio_features(input_features=feats["input_features"]).pooler_output[0].double().numpy()
            t = model.get_text_features(**tokens).pooler_output[0].double().numpy()
        out.append(a @ t / np.linalg.norm(a) / np.linalg.norm(t))
    return np.asarray(out)


def test_clap_score_matches_manual_cosine_and_is_batch_invariant(clap_dir: Path, tmp_path: Path) -> None:
    clips = [tone(440.0, 1.0), tone(1500.0, 0.5, amp=0.2), tone(200.0, 1.5, noise=0.3)]
    rel = write_clips(tmp_path, "gen", clips, rate=RATE)
    docs = [{"caption": "a dog barks"}, {"caption": "a red circle"}, {"caption": "Is the circle to the left?"}, {"caption": "silence"}]
    parsed: list[Any] = [{"media": [r]} for r in rel] + [{"media": []}]
    ctxs = ctxs_for(tmp_path, 4, docs)
    one = CLAPScore(caption="{{caption}}", clap_model=str(clap_dir), feature_batch_size=1).score_batch(parsed, [None] * 4, ctxs)
    many = CLAPScore(caption="caption", clap_model=str(clap_dir), feature_batch_size="8").score_batch(parsed, [None] * 4, ctxs)
    assert one[3] == {} and many[3] == {}  # no generated audio: no value
    manual = manual_clap_cosines(clap_dir, [read_wav(tmp_path / r) for r in rel], [d["caption"] for d in docs[:3]])
    assert np.allclose([s["clap_score"] for s in one[:3]], manual, atol=1e-5)
    assert np.allclose([s["clap_score"] for s in many[:3]], manual, atol=1e-5)
    assert len({round(float(m), 4) for m in manual}) == 3
    scaled = CLAPScore(caption="caption", scale="100", clap_model=str(clap_dir)).score(parsed[0], None, ctxs[0])
    assert scaled["clap_score"] == pytest.approx(100 * manual[0], abs=1e-3)


def test_clap_score_caption_lists_and_errors(clap_dir: Path, tmp_path: Path) -> None:
    rel = write_clips(tmp_path, "gen", [tone(440.0, 1.0)])
    metric = CLAPScore(caption="captions", clap_model=str(clap_dir))
    ctx = ParseContext(doc_id="a", doc={"captions": ["a dog barks", "a red circle"]}, root=tmp_path)
    both = metric.score({"media": rel}, None, ctx)["clap_score"]
    singles = [
        metric.score({"media": rel}, None, ParseContext(doc_id="a", doc={"captions": c}, root=tmp_path))["clap_score"]
        for c in ctx.doc["captions"]
    ]
    assert both == pytest.approx(np.mean(singles), abs=1e-6)
    with pytest.raises(ValueError, match="caption column 'captions' is not in document b"):
        metric.score({"media": rel}, None, ParseContext(doc_id="b", doc={"text": "x"}, root=tmp_path))
    with pytest.raises(ValueError, match="caption template"):
        CLAPScore(caption="{{ title }}", clap_model=str(clap_dir)).score({"media": rel}, None, ctx)
    with pytest.raises(MetricArgsError, match="unknown argument"):
        CLAPScore(captoin="caption", clap_model=str(clap_dir))


def test_fad_clap_one_embedding_per_clip(clap_dir: Path, tmp_path: Path) -> None:
    gen = write_clips(tmp_path, "gen", [tone(300.0 * (i + 1), 0.8, noise=0.1, seed=i) for i in range(5)])
    refs = [str(tmp_path / r) for r in write_clips(tmp_path, "ref", [tone(700.0 + 90 * i, 0.8, seed=20 + i) for i in range(4)])]
    metric = FAD(extractor="clap", clap_model=str(clap_dir), bootstrap=0)
    out = metric.corpus_score([{"media": [g]} for g in gen], refs, ctxs_for(tmp_path, 5), all_targets=refs)["fad_clap"]
    ex = ClapAudioFeatures(clap_model=str(clap_dir))
    g, r = ex.features([str(tmp_path / p) for p in gen]), ex.features(refs)
    assert g.shape == (5, 16) and r.shape == (4, 16)
    assert out.value == pytest.approx(float(np.sum((g.mean(0) - r.mean(0)) ** 2)) + _trace_terms(g, r), rel=1e-6)
    assert out.n == 5
