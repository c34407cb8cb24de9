"""Broken media in real datasets: each fault is a clear per-sample error naming the file.

Unit tests plant each fault (truncated, corrupt, empty, oversized, implausible sample rate,
missing) and call the shared decode helpers every adapter uses; end-to-end tests run a local
image task on tiny-llava, an audio task on a tiny Qwen2-Audio and a video task on a model that
decodes with ``decode_video``, each with good samples and one sample per fault, and check that
the faults are counted failures in run.json while the good samples are scored, and that
``--strict`` makes the same run exit non-zero. Every broken file is generated in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import struct
import warnings
import wave
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mmeval.cli import app
from mmeval.engine.runner import RunConfig, evaluate
from mmeval.media import ffmpeg
from mmeval.media.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, decode_audio
from mmeval.media.image import MAX_IMAGE_PIXELS
from mmeval.media.video import decode_video, encode_apng
from mmeval.models import base
from mmeval.models.base import Capabilities, Model, prepare_each
from mmeval.models.hf_whisper import load_clip
from mmeval.models.tiny_audio import build_tiny_qwen2_audio
from mmeval.types import MediaError, MediaPart, Request, Response
from tests.conftest import write_task

HAS_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAS_FFMPEG, reason="needs the ffmpeg and ffprobe command-line tools")

# --------------------------------------------------------------------------- planting faults


def png_bytes(size: tuple[int, int] = (16, 16), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """A PNG (or APNG) whose header declares width x height: a decompression bomb in a few
    hundred bytes (the pixel data does not match, which only decoding would find out)."""
    raw = bytearray(png)
    raw[16:24] = struct.pack(">II", width, height)  # IHDR data follows the signature, length and type
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))  # CRC over type + data
    return bytes(raw)


def first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def noise(n: int = 600, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert ffmpeg.container(data) is None  # random, not by chance the signature of a real format
    return data


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """16-bit PCM WAV; ``samples`` in [-1, 1], repeated across ``channels``. The header may
    declare any rate, plausible or not."""
    pcm = np.repeat((np.asarray(samples) * 32767).round().astype("<i2"), channels)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def apng_bytes(frames: int = 4, size: int = 16, seed: int = 0) -> bytes:
    return encode_apng(np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8), fps=8)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def raises_naming(path: Path, match: str) -> Iterator[None]:
    """A MediaError whose message names the file and says what is wrong (``match``, a regex)."""
    with pytest.raises(MediaError) as info:
        yield
    message = str(info.value)
    assert str(path) in message, message
    assert re.search(match, message), f"{match!r} not in {message!r}"


# --------------------------------------------------------------------------- images


def test_truncated_png_and_jpeg_name_the_file(tmp_path: Path) -> None:
    for name, data in (("cut.png", png_bytes((64, 64))), ("cut.jpg", jpeg_bytes())):
        path = write(tmp_path / name, first_half(data))
        with raises_naming(path, "truncated"):
            MediaPart("image", path=str(path)).load_image()
    assert MediaPart("image", data=jpeg_bytes()).load_image().size == (64, 64)  # the uncut file decodes


def test_random_bytes_named_png_are_not_an_image(tmp_path: Path) -> None:
    path = write(tmp_path / "noise.png", noise())
    with raises_naming(path, "not a readable image"):
        MediaPart("image", path=str(path)).load_image()


def test_decompression_bomb_is_refused_from_its_header_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    def no_decoding(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    # 20,000 x 20,000 (over Pillow's own hard limit) and 10,000 x 10,000 (where Pillow only warns).
    for side in (20_000, 10_000):
        bomb = with_png_size(png_bytes((1, 1)), side, side)
        assert len(bomb) < 200
        path = write(tmp_path / f"bomb{side}.png", bomb)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # mmeval's guard decides, silently
            with raises_naming(path, "decompression-bomb guard"):
                MediaPart("image", path=str(path)).load_image()
    monkeypatch.undo()
    # The limit is explicit: a caller may lower it; the default takes ordinary images.
    with pytest.raises(MediaError, match="over the 100-pixel limit"):
        MediaPart("image", data=png_bytes((16, 16))).load_image(max_pixels=100)
    assert 4000 * 4000 <= MAX_IMAGE_PIXELS < 10_000 * 10_000
    assert MediaPart("image", data=png_bytes((16, 16))).load_image().size == (16, 16)


# --------------------------------------------------------------------------- every modality


def test_empty_and_missing_files_of_every_modality(tmp_path: Path) -> None:
    decoders = {
        "image": lambda p: p.load_image(),
        "audio": lambda p: decode_audio(p, 16_000),
        "video": lambda p: decode_video(p),
    }
    for modality, decode in decoders.items():
        empty = write(tmp_path / f"empty.{modality}", b"")
        with raises_naming(empty, r"is empty \(0 bytes\)"):
            decode(MediaPart(modality, path=str(empty)))  # type: ignore[arg-type]
        missing = tmp_path / f"missing.{modality}"
        part = MediaPart(modality, path=str(missing))  # type: ignore[arg-type]
        with raises_naming(missing, f"cannot read {modality} file .*No such file"):
            part.sha256()  # where the runner meets it first: hashing the prompt
        with raises_naming(missing, f"cannot read {modality} file"):
            decode(part)
    with pytest.raises(MediaError, match="cannot read audio file"):
        MediaPart("audio", path=str(tmp_path / "missing.wav")).load_audio()


# --------------------------------------------------------------------------- audio


def test_truncated_wav_is_refused_not_silently_shortened(tmp_path: Path) -> None:
    good = wav_bytes(tone(440, 16_000, 1.0), 16_000)
    for name, cut in (("cut.wav", first_half(good)), ("cut-mid-sample.wav", good[: len(good) // 2 + 1])):
        path = write(tmp_path / name, cut)
        part = MediaPart("audio", path=str(path))
        with raises_naming(path, r"truncated: its header declares 16,000 frames \(1.00 s\), the file holds 7,9\d\d"):
            part.load_audio()
        with raises_naming(path, "truncated"):
            decode_audio(part, 16_000)
    header_cut = write(tmp_path / "header-cut.wav", good[:30])
    with raises_naming(header_cut, "ends inside its header"):
        MediaPart("audio", path=str(header_cut)).load_audio()


def test_streamed_wav_of_unknown_length_still_decodes() -> None:
    """ffmpeg writing to a pipe leaves 0xFFFFFFFF as the data size: not a truncation."""
    raw = bytearray(wav_bytes(tone(440, 16_000, 0.25), 16_000))
    assert raw[36:40] == b"data"
    raw[40:44] = b"\xff\xff\xff\xff"
    samples, rate = MediaPart("audio", data=bytes(raw)).load_audio()
    assert rate == 16_000 and samples.shape == (4000,)


def test_corrupt_wav_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "noise.wav", noise())
    with raises_naming(path, "cannot decode audio .* as WAV"):
        MediaPart("audio", path=str(path)).load_audio()
    if HAS_FFMPEG:
        with raises_naming(path, "not WAV, and ffmpeg cannot read it"):
            decode_audio(MediaPart("audio", path=str(path)))
    # Without ffmpeg, random bytes are not "a file that needs ffmpeg": installing it would not help.
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda _tool: None)
    with raises_naming(path, "not a recognised audio format"):
        decode_audio(MediaPart("audio", path=str(path)))
    flac = write(tmp_path / "clip.flac", b"fLaC" + noise(60))
    with raises_naming(flac, "needs ffmpeg"):
        decode_audio(MediaPart("audio", path=str(flac)))


def test_wav_with_zero_frames_has_no_samples(tmp_path: Path) -> None:
    path = write(tmp_path / "silent.wav", wav_bytes(np.zeros(0), 16_000))
    assert path.stat().st_size == 44  # a valid header, no data
    for decode in (lambda p: p.load_audio(), lambda p: decode_audio(p, 16_000), lambda p: load_clip(p, 16_000)):
        with raises_naming(path, r"has no samples \(0 frames\)"):
            decode(MediaPart("audio", path=str(path)))


@pytest.mark.parametrize("rate", [1, 999, 10_000_000])
def test_implausible_sample_rate_is_refused_by_every_audio_decoder(tmp_path: Path, rate: int) -> None:
    path = write(tmp_path / f"rate{rate}.wav", wav_bytes(np.zeros(64), rate))
    for decode in (lambda p: p.load_audio(), lambda p: decode_audio(p, 16_000), lambda p: load_clip(p, 16_000)):
        with raises_naming(path, f"sample rate of {rate:,} Hz, outside the plausible"):
            decode(MediaPart("audio", path=str(path)))


@pytest.mark.parametrize("rate", [MIN_SAMPLE_RATE, 8_000, 44_100, MAX_SAMPLE_RATE])
def test_plausible_sample_rates_decode(rate: int) -> None:
    samples, got = MediaPart("audio", data=wav_bytes(tone(100, rate, 0.01), rate)).load_audio()
    assert got == rate and samples.shape == (round(rate * 0.01),)


@pytest.mark.parametrize(("source_rate", "channels"), [(8_000, 1), (44_100, 2), (16_000, 1)])
def test_decode_audio_resamples_to_the_rate_the_model_needs(source_rate: int, channels: int) -> None:
    part = MediaPart("audio", data=wav_bytes(tone(440, source_rate, 0.5), source_rate, channels))
    samples, rate = decode_audio(part, 16_000)
    assert rate == 16_000 and samples.dtype == np.float32 and samples.shape == (8000,)
    # The same 440 Hz tone, sampled at 16 kHz (away from the filter's edge transients).
    expected = tone(440, 16_000, 0.5)
    assert np.abs(samples[400:-400] - expected[400:-400]).max() < 0.01
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(samples.size, 1 / 16_000)[spectrum.argmax()] == pytest.approx(440, abs=2)
    # The audio adapters' own decode path (Whisper, Qwen2-Audio, the cascade) agrees.
    clip = load_clip(part, 16_000)
    assert clip.resampled == (source_rate != 16_000) and clip.source_rate == source_rate
    np.testing.assert_allclose(clip.samples, samples, atol=1e-4)
    assert decode_audio(part)[1] == source_rate  # no target rate: the file's own


# --------------------------------------------------------------------------- video


def test_truncated_and_corrupt_apng_name_the_file(tmp_path: Path) -> None:
    good = apng_bytes(frames=6)
    frames, fps = decode_video(MediaPart("video", data=good))
    assert frames.shape == (6, 16, 16, 3) and fps == pytest.approx(8.0)
    cut = write(tmp_path / "cut.png", first_half(good))
    with raises_naming(cut, r"truncated .*after \d of 6 frames"):
        decode_video(MediaPart("video", path=str(cut)))
    broken = bytearray(good)
    broken[len(good) // 2 : len(good) // 2 + 64] = noise(64)
    corrupt = write(tmp_path / "corrupt.png", bytes(broken))
    with raises_naming(corrupt, "cannot decode video"):
        decode_video(MediaPart("video", path=str(corrupt)))


def test_video_frames_over_the_pixel_limit_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.png", with_png_size(apng_bytes(frames=2), 20_000, 20_000))
    with raises_naming(path, "decompression-bomb guard"):
        decode_video(MediaPart("video", path=str(path)))
    with pytest.raises(MediaError, match="over the 100-pixel limit"):
        decode_video(MediaPart("video", data=apng_bytes()), max_pixels=100)


def test_random_bytes_video_without_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda _tool: None)
    path = write(tmp_path / "noise.mp4", noise())
    with raises_naming(path, "not a recognised video format"):
        decode_video(MediaPart("video", path=str(path)))
    mp4 = write(tmp_path / "clip.mp4", b"\x00\x00\x00\x18ftypisom" + noise(60))
    with raises_naming(mp4, "needs ffmpeg and ffprobe"):
        decode_video(MediaPart("video", path=str(mp4)))


def ffmpeg_video(path: Path, *args: str) -> bytes:
    import subprocess

    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=8", "-t", "1", *args, str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path.read_bytes()


@needs_ffmpeg
def test_ffmpeg_path_truncated_and_corrupt_videos(tmp_path: Path) -> None:
    mp4 = ffmpeg_video(tmp_path / "ok.mp4", "-pix_fmt", "yuv420p")
    frames, fps = decode_video(MediaPart("video", data=mp4))
    assert frames.shape == (8, 32, 32, 3) and fps == 8.0
    # Index at the end (the default): half a file has no index at all.
    cut = write(tmp_path / "cut.mp4", first_half(mp4))
    with raises_naming(cut, "cannot decode video"):
        decode_video(MediaPart("video", path=str(cut)))
    # Index first (+faststart): ffmpeg decodes up to the cut and exits 0; fewer frames than
    # declared, with decode errors, is a truncation rather than a shorter clip.
    fast = ffmpeg_video(tmp_path / "fast.mp4", "-pix_fmt", "yuv420p", "-movflags", "+faststart")
    for keep in (0.5, 0.9):
        path = write(tmp_path / f"fast-cut{keep}.mp4", fast[: int(len(fast) * keep)])
        with raises_naming(path, "cannot decode video|truncated or corrupt"):
            decode_video(MediaPart("video", path=str(path)))
    assert decode_video(MediaPart("video", data=fast), max_frames=3)[0].shape[0] == 3  # a frame cap is not a truncation
    noise_mp4 = write(tmp_path / "noise.mp4", noise())
    with raises_naming(noise_mp4, "not a recognised video format"):
        decode_video(MediaPart("video", path=str(noise_mp4)))


@needs_ffmpeg
def test_avi_goes_to_ffmpeg_not_pillow(tmp_path: Path) -> None:
    """AVI is a RIFF file like WebP; only RIFF....WEBP is Pillow's."""
    avi = ffmpeg_video(tmp_path / "ok.avi", "-c:v", "mpeg4")
    assert decode_video(MediaPart("video", data=avi))[0].shape == (8, 32, 32, 3)


# --------------------------------------------------------------------------- end to end

TASK_YAML = """\
task: {task}
version: 1
dataset: {{path: data.jsonl}}
doc_id: id
prompt:
  - {modality}: media
  - text: "{{{{ question }}}}"
target: answer
generation: {{max_new_tokens: 4}}
metrics: [exact_match]
"""


class FrameCountModel(Model):
    """Answers with the number of frames in a request's videos, decoded by ``decode_video`` (no
    in-process adapter takes video input yet). Like the real adapters it decodes each request
    on its own (``prepare_each``); with ``isolate=false`` it decodes the whole batch at once, as
    a naive adapter would, so one broken file fails the batch and the runner retries one by one."""

    name = "test-frame-count"
    capabilities = Capabilities(input_modalities=frozenset({"text", "video"}))
    allowed_args = frozenset({"isolate"})
    batches: ClassVar[list[int]] = []

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        FrameCountModel.batches.append(len(requests))
        if self.args.get("isolate") == "false":
            return [Response(id=r.id, text=str(self._frames(r)), finish_reason="stop") for r in requests]
        prepared, failed = prepare_each(requests, self._frames)
        done = {r.id: Response(id=r.id, text=str(n), finish_reason="stop") for r, n in prepared}
        return [failed.get(r.id) or done[r.id] for r in requests]

    @staticmethod
    def _frames(request: Request) -> int:
        return sum(decode_video(part)[0].shape[0] for part in request.media("video"))


@pytest.fixture
def frame_count_model(test_models: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(base, "BUILTIN_MODELS", {**base.BUILTIN_MODELS, "test-frame-count": f"{__name__}:FrameCountModel"})
    FrameCountModel.batches = []
    return "test-frame-count"


@pytest.fixture(scope="module")
def tiny_qwen2_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio") / "model", seed=0)


def faulty_task(root: Path, modality: str, good: dict[str, tuple[bytes, str]], faults: dict[str, bytes | None]) -> Path:
    """A local jsonl task: ``good`` files (with their answers), then one document per fault
    (None: the file is missing). Doc ids are the file names."""
    rows = []
    for name, (data, answer) in good.items():
        write(root / "media" / name, data)
        rows.append({"id": name, "media": f"media/{name}", "question": "What is it?", "answer": answer})
    for name, fault in faults.items():
        if fault is not None:
            write(root / "media" / name, fault)
        rows.append({"id": name, "media": f"media/{name}", "question": "What is it?", "answer": "x"})
    return write_task(root, rows, TASK_YAML.format(task=f"faulty_{modality}", modality=modality))


def sample_rows(run_dir: Path, task: str) -> dict[str, dict]:
    return {r["doc_id"]: r for r in map(json.loads, (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines())}


def check_faults_are_counted(
    run_dir: Path, task: str, good: Sequence[str], faults: dict[str, str], kinds: Sequence[str] = ("media",)
) -> dict:
    """Good samples scored; each fault a per-sample error naming its file and what is wrong,
    counted in run.json (``n_errors`` and errors by kind). Returns the task's results."""
    doc = json.loads((run_dir / "run.json").read_text())
    assert doc["status"] == "complete"
    rows = sample_rows(run_dir, task)
    assert set(rows) == {*good, *faults}
    for name in good:
        assert rows[name]["error"] is None and "exact_match" in rows[name]["scores"], rows[name]
    for name, what in faults.items():
        error = rows[name]["error"] or ""
        assert error.split(":", 1)[0] in kinds and f"media/{name}" in error and re.search(what, error), (name, error)
        assert rows[name]["scores"] == {}
    result = doc["results"][task]
    assert result["n"] == len(good) + len(faults) and result["n_errors"] == len(faults)
    assert sum(result["errors"].values()) == len(faults) and set(result["errors"]) <= set(kinds), result["errors"]
    assert result["metrics"]["exact_match"]["n"] == len(good)
    return result


def evaluate_then_strict_cli(task: Path, out: Path, model: str, model_args: dict[str, str], n_faults: int) -> Path:
    """The run through the API (batch size 2), then the same run through ``mmeval run --strict``:
    a non-zero exit, with run.json still written. Returns the API run's directory."""
    cfg = RunConfig(model=model, tasks=[str(task)], model_args=model_args, batch_size=2, output=out, progress=False, log=lambda _m: None)
    run = evaluate(cfg)
    args = ["run", "--model", model, "--tasks", str(task), "--batch-size", "2", "--output", str(out), "--strict"]
    if model_args:
        args += ["--model-args", ",".join(f"{k}={v}" for k, v in model_args.items())]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output  # an exit code, not a crash
    (strict_dir,) = {p.parent for p in out.glob("*/run.json")} - {run.path}
    strict_doc = json.loads((strict_dir / "run.json").read_text())
    assert strict_doc["status"] == "complete" and strict_doc["n_errors"] == n_faults
    return run.path


def test_image_task_with_every_fault_on_tiny_llava(tmp_path: Path) -> None:
    good = {"red.png": (png_bytes(), "red"), "noise.jpg": (jpeg_bytes(), "noise"), "blue.png": (png_bytes(color=(0, 0, 250)), "blue")}
    faults = {
        "cut.png": first_half(png_bytes((64, 64))),
        "cut.jpg": first_half(jpeg_bytes()),
        "random.png": noise(),
        "bomb.png": with_png_size(png_bytes((1, 1)), 20_000, 20_000),
        "empty.png": b"",
        "missing.png": None,
    }
    task = faulty_task(tmp_path / "task", "image", good, faults)
    run_dir = evaluate_then_strict_cli(task, tmp_path / "res", "tiny-llava", {}, len(faults))
    whats = {
        "cut.png": "truncated",
        "cut.jpg": "truncated",
        "random.png": "not a readable image",
        "bomb.png": "decompression-bomb guard",
        "empty.png": r"empty \(0 bytes\)",
        "missing.png": "No such file",
    }
    assert check_faults_are_counted(run_dir, "faulty_image", list(good), whats)["errors"] == {"media": len(faults)}


def test_audio_task_with_every_fault_on_tiny_qwen2_audio(tmp_path: Path, tiny_qwen2_audio: Path) -> None:
    good = {
        "tone16k.wav": (wav_bytes(tone(440, 16_000, 0.5), 16_000), "tone"),
        "tone8k.wav": (wav_bytes(tone(440, 8_000, 0.5), 8_000), "tone"),  # resampled to the model's 16 kHz
        "stereo44k.wav": (wav_bytes(tone(220, 44_100, 0.5), 44_100, channels=2), "tone"),
    }
    clip = wav_bytes(tone(440, 16_000, 0.5), 16_000)
    faults = {
        "cut.wav": first_half(clip),
        "random.wav": noise(),
        "empty.wav": b"",
        "silent.wav": wav_bytes(np.zeros(0), 16_000),
        "rate1.wav": wav_bytes(np.zeros(64), 1),
        "rate10m.wav": wav_bytes(np.zeros(64), 10_000_000),
        "missing.wav": None,
    }
    task = faulty_task(tmp_path / "task", "audio", good, faults)
    args = {"pretrained": str(tiny_qwen2_audio), "device": "cpu"}
    run_dir = evaluate_then_strict_cli(task, tmp_path / "res", "hf-qwen2-audio", args, len(faults))
    whats = {
        "cut.wav": "truncated: its header declares 8,000 frames",
        "random.wav": "cannot decode audio .* as WAV",
        "empty.wav": r"empty \(0 bytes\)",
        "silent.wav": "no samples",
        "rate1.wav": "sample rate of 1 Hz",
        "rate10m.wav": "sample rate of 10,000,000 Hz",
        "missing.wav": "No such file",
    }
    assert check_faults_are_counted(run_dir, "faulty_audio", list(good), whats)["errors"] == {"media": len(faults)}
    # The 8 kHz clip of the 16 kHz clip's tone, resampled, is what the model hears: same answer.
    rows = sample_rows(run_dir, "faulty_audio")
    assert rows["tone8k.wav"]["response"] == rows["tone16k.wav"]["response"] != rows["stereo44k.wav"]["response"]


VIDEO_FAULTS = {
    "cut.png": (first_half(apng_bytes(frames=6)), "truncated"),
    "random.mp4": (noise(), "not a recognised video format"),
    "empty.mp4": (b"", r"empty \(0 bytes\)"),
    "bomb.png": (with_png_size(apng_bytes(frames=2), 20_000, 20_000), "decompression-bomb guard"),
    "missing.mp4": (None, "No such file"),
}


def test_video_task_with_every_fault(tmp_path: Path, frame_count_model: str) -> None:
    good = {f"clip{n}.png": (apng_bytes(frames=n, seed=n), str(n)) for n in (3, 4, 5)}
    faults = dict(VIDEO_FAULTS)
    if HAS_FFMPEG:
        faults["cut.mp4"] = (first_half(ffmpeg_video(tmp_path / "ok.mp4", "-pix_fmt", "yuv420p")), "cannot decode video")
    task = faulty_task(tmp_path / "task", "video", good, {k: v for k, (v, _) in faults.items()})
    run_dir = evaluate_then_strict_cli(task, tmp_path / "res", frame_count_model, {}, len(faults))
    result = check_faults_are_counted(run_dir, "faulty_video", list(good), {k: what for k, (_, what) in faults.items()})
    assert result["errors"] == {"media": len(faults)}
    assert result["metrics"]["exact_match"]["value"] == 1.0  # the good clips decode to every frame


def test_a_broken_file_that_fails_a_whole_batch_fails_only_its_sample(tmp_path: Path, frame_count_model: str) -> None:
    """An adapter that decodes the batch at once raises on the broken file; the runner retries
    the batch one request at a time, so the good neighbour is still scored."""
    good = {f"clip{n}.png": (apng_bytes(frames=n, seed=n), str(n)) for n in (3, 4, 5)}
    faults = {k: v for k, v in VIDEO_FAULTS.items() if k in ("cut.png", "bomb.png")}
    task = faulty_task(tmp_path / "task", "video", good, {k: v for k, (v, _) in faults.items()})
    cfg = RunConfig(
        model=frame_count_model,
        tasks=[str(task)],
        model_args={"isolate": "false"},
        batch_size=2,
        output=tmp_path / "res",
        progress=False,
        log=lambda _m: None,
    )
    run = evaluate(cfg)
    assert 2 in FrameCountModel.batches and 1 in FrameCountModel.batches  # batched, then retried one by one
    # A MediaError the adapter raises is counted as a media fault, like one found while rendering.
    whats = {k: what for k, (_, what) in faults.items()}
    result = check_faults_are_counted(run.path, "faulty_video", list(good), whats, kinds=("media",))
    assert result["metrics"]["exact_match"]["value"] == 1.0
