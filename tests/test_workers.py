"""Worker-process adapters: the JSON-lines protocol, WorkerProcess failure handling, and the
real nextgpt / minigpt4 / openflamingo worker scripts driven through their adapters against
fake repositories (tests/workers/fake_repos) with this venv's python as "the other" env."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from mmeval.media.video import decode_video
from mmeval.models.base import Capabilities, ModelArgsError, build_model, get_model_class, sample_seed
from mmeval.models.workers import protocol
from mmeval.models.workers.adapter import COMMON_ARGS, SCRIPTS_DIR, WorkerModel, guess_suffix
from mmeval.models.workers.nextgpt import strip_signal_tokens
from mmeval.models.workers.process import WorkerStartError
from mmeval.types import GenerationConfig, MediaPart, Message, Request, TextPart
from tests.workers import fakes

sys.path.insert(0, str(SCRIPTS_DIR))
import nextgpt_worker
import worker_loop

ECHO = Path(__file__).resolve().parent / "workers" / "echo_worker.py"
PY = sys.executable


class EchoModel(WorkerModel):
    name: ClassVar[str] = "echo-worker"
    script: ClassVar[str] = str(ECHO)
    capabilities: ClassVar[Capabilities] = Capabilities(
        input_modalities=frozenset({"text", "image", "audio", "video"}), output_modalities=frozenset({"text", "image", "audio", "video"})
    )
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS | {"mode", "delay"}

    def build_config(self, args: dict[str, str]) -> dict[str, Any]:
        return {"mode": args.get("mode"), "delay": float(args.get("delay", 0))}


def echo(tmp_path: Path, **args: str) -> EchoModel:
    return EchoModel(**{"python": PY, "repo": str(tmp_path), "timeout": "30", "startup_timeout": "60", **args})


def png(color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def wav_file(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.arange(800, dtype="<i2").tobytes())
    return path


def req(rid: str, *parts: Any, out: str = "text", gen: GenerationConfig | None = None, turns: tuple[Message, ...] = ()) -> Request:
    user = Message("user", tuple(TextPart(p) if isinstance(p, str) else p for p in parts))
    return Request(id=rid, messages=(*turns, user), generation=gen or GenerationConfig(max_new_tokens=32), output_modality=out)  # type: ignore[arg-type]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gone(pid: int) -> bool:
    """The process has exited *and* been reaped (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    else:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --------------------------------------------------------------------------- (a) protocol


def test_both_sides_agree_on_the_message_schema() -> None:
    request = req(
        "q1", MediaPart("image", path="/tmp/x.png"), "hi", out="image", gen=GenerationConfig(max_new_tokens=5, temperature=0.5, seed=3)
    )
    msg = protocol.generate_message("r0", protocol.encode_messages(request, lambda p: p.path or ""), request, 77, "/tmp/out")
    assert worker_loop.check_request(json.loads(protocol.dumps(msg))) is None
    assert msg["messages"] == [{"role": "user", "parts": [{"type": "image", "path": "/tmp/x.png"}, {"type": "text", "text": "hi"}]}]
    assert msg["generation"] == {"max_new_tokens": 5, "temperature": 0.5, "top_p": 1.0, "seed": 77, "stop": []}
    for breakage in ({"output_modality": "smell"}, {"messages": []}, {"generation": {**msg["generation"], "seed": True}}, {"id": ""}):
        bad = {**msg, **breakage}
        assert worker_loop.check_request(bad) is not None
        with pytest.raises(protocol.ProtocolError):
            protocol.check_generate(bad)
    reply = worker_loop.response("r0", {"text": "t", "signal_tokens": {"image": True}, "timings": {"a": 1}}, total_s=0.5)
    parsed = protocol.parse_line(json.dumps(reply))
    assert isinstance(parsed, protocol.WorkerResponse)
    assert (parsed.id, parsed.text, parsed.signal_tokens, parsed.timings) == ("r0", "t", {"image": True}, {"a": 1.0, "total_s": 0.5})
    assert worker_loop.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    for line in (
        "not json",
        "[1]",
        '{"type": "nope"}',
        '{"type": "response", "id": 3}',
        '{"type": "response", "id": "r", "signal_tokens": {"smell": true}}',
    ):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_line(line)


def test_round_trip_of_text_and_media(tmp_path: Path) -> None:
    model = echo(tmp_path)
    assert model._process is None and model.info()["worker"] is None  # lazy: nothing started yet
    image = png((250, 0, 0))
    audio = wav_file(tmp_path / "clip.wav")
    gen = GenerationConfig(max_new_tokens=9, temperature=0.7, top_p=0.9, seed=5)
    requests = [
        req("img", MediaPart("image", data=image), MediaPart("audio", path=str(audio)), "describe", out="image", gen=gen),
        req("aud", "say", out="audio"),
        req("vid", "film", out="video"),
        req("txt", "hello", turns=(Message("system", (TextPart("be brief"),)),)),
    ]
    try:
        out = {r.id: r for r in model.generate(requests)}
        assert all(r.error is None for r in out.values()), [r.error for r in out.values()]
        first = out["img"]
        assert first.text == "echo: describe"
        inputs = first.meta["inputs"]
        assert [(i["type"], i["sha256"]) for i in inputs] == [("image", sha(image)), ("audio", sha(audio.read_bytes()))]
        assert inputs[0]["suffix"] == ".png" and inputs[1]["suffix"] == ".wav"
        assert first.meta["generation"] == {
            "max_new_tokens": 9,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": sample_seed(requests[0]),
            "stop": [],
        }
        assert first.meta["signal_tokens"] == {"image": True, "audio": False, "video": False}
        [art] = first.artifacts
        expected = np.random.default_rng(sample_seed(requests[0])).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
        assert art.modality == "image" and art.format == "png" and art.sha256 == sha(art.data or b"")
        assert np.array_equal(np.asarray(MediaPart("image", data=art.data).load_image()), expected)
        samples, rate = MediaPart("audio", data=out["aud"].artifacts[0].data).load_audio()
        assert (rate, samples.shape, out["aud"].artifacts[0].meta["sample_rate"]) == (16000, (1600,), 16000)
        frames, fps = decode_video(MediaPart("video", data=out["vid"].artifacts[0].data))
        assert frames.shape == (3, 6, 8, 3) and fps == pytest.approx(4.0) and frames[2].max() == 80
        assert out["txt"].artifacts == [] and out["txt"].meta["roles"] == ["system", "user"]
        assert set(out["txt"].timings) >= {"echo_s", "total_s"}
        info = model.info()
        assert info["worker"]["echo"] is True and info["worker_restarts"] == 0 and Path(info["worker_log"]).is_file()
        assert model._tmp is not None and not any((model._tmp / "out").iterdir()) and not any((model._tmp / "in").iterdir())
        log = Path(info["worker_log"]).read_text()
        assert "loading the echo model (this print must not reach the protocol)" in log  # print() went to the log
    finally:
        model.close()
    assert model._tmp is None


def test_worker_error_fails_one_request_and_keeps_serving(tmp_path: Path) -> None:
    model = echo(tmp_path)
    try:
        bad, good = model.generate([req("a", "fail"), req("b", "fine")])
        assert bad.error is not None and "ValueError: asked to fail" in bad.error and bad.finish_reason == "error"
        assert good.error is None and good.text == "echo: fine"
        missing, ok = model.generate([req("c", MediaPart("image", path=str(tmp_path / "nope.png")), "x"), req("d", "still")])
        assert missing.error is not None and "nope.png does not exist" in missing.error and ok.error is None
        stray = model.generate([req("e", "outside")])[0]
        assert stray.error is not None and "outside its output_dir" in stray.error
        cut = model.generate([req("f", "fine", gen=GenerationConfig(stop=(" fi",)))])[0]
        assert (cut.text, cut.finish_reason) == ("echo:", "stop")  # stop strings are applied to worker text
        partial = req("g", MediaPart("image", data=png((1, 1, 1))), MediaPart("audio", path="/nonexistent.wav"), "x")
        assert "does not exist" in (model.generate([partial])[0].error or "")
        assert model._tmp is not None and not any((model._tmp / "in").iterdir())  # the image written for it is gone
        assert model._process is not None and model._process.starts == 1
    finally:
        model.close()


def test_crash_mid_request_fails_it_with_stderr_tail_and_restarts(tmp_path: Path) -> None:
    model = echo(tmp_path)
    try:
        before, crashed, after = model.generate([req("a", "before"), req("b", "crash"), req("c", "after")])
        assert before.error is None and after.error is None
        assert crashed.error is not None
        assert "exited with code 3 while serving request" in crashed.error
        assert "crashing on purpose (RuntimeError: boom)" in crashed.error  # the stderr tail
        log = Path(model.info()["worker_log"])
        assert f"full log: {log}" in crashed.error and "crashing on purpose" in log.read_text()
        assert before.meta["pid"] != after.meta["pid"] and gone(before.meta["pid"])
        assert model.info()["worker_restarts"] == 1
    finally:
        model.close()


def test_restarts_are_bounded(tmp_path: Path) -> None:
    model = echo(tmp_path, max_restarts="1")
    try:
        first, second, third = model.generate([req("a", "crash"), req("b", "crash"), req("c", "hello")])
        assert "exited with code 3" in (first.error or "") and "exited with code 3" in (second.error or "")
        assert "not restarting it again (max_restarts=1)" in (third.error or "")
    finally:
        model.close()


def test_hung_worker_times_out_and_is_replaced(tmp_path: Path) -> None:
    model = echo(tmp_path, timeout="1")
    try:
        start = time.monotonic()
        hung, after = model.generate([req("a", "hang"), req("b", "after")])
        assert time.monotonic() - start < 8
        assert "gave no answer to request" in (hung.error or "") and "within 1s" in (hung.error or "")
        assert after.error is None and model.info()["worker_restarts"] == 1
    finally:
        model.close()


def test_stdout_noise_goes_to_the_log_and_a_corrupt_line_fails_only_its_request(tmp_path: Path) -> None:
    model = echo(tmp_path)
    try:
        noisy, corrupt, after = model.generate([req("a", "noise"), req("b", "corrupt"), req("c", "after")])
        assert noisy.error is None and noisy.text == "echo: noise"
        assert "not a protocol message" in (corrupt.error or "") and "this is not json" in (corrupt.error or "")
        assert after.error is None and after.meta["pid"] == noisy.meta["pid"]  # no restart needed
        log = Path(model.info()["worker_log"]).read_text()
        assert "noise through print()" in log and "noise through fd 1" in log
        assert "dropped a response for a request already failed" in log  # its late answer was not misattributed
    finally:
        model.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"mode": "fatal"}, "failed to load the model: FileNotFoundError: no checkpoint at /nowhere/model.pt (set ckpt=)"),
        ({"mode": "exit"}, "exited with code 2 before it was ready"),
        ({"mode": "old_protocol"}, "speaks protocol version 0, this mmeval speaks 1"),
        ({"delay": "30", "startup_timeout": "0.5"}, "was not ready after 0.5s"),
    ],
)
def test_start_failures_raise_clear_errors(tmp_path: Path, args: dict[str, str], message: str) -> None:
    model = echo(tmp_path, **args)
    try:
        with pytest.raises(WorkerStartError) as err:
            model.generate([req("a", "hello")])
        assert message in str(err.value) and "full log:" in str(err.value)
        if args.get("mode") == "exit":
            assert "loader giving up" in str(err.value)
    finally:
        model.close()


def test_startup_banner_is_ignored_and_close_leaves_no_zombie(tmp_path: Path) -> None:
    model = echo(tmp_path, mode="noisy_start")
    [resp] = model.generate([req("a", "hi")])
    assert resp.error is None
    pid = resp.meta["pid"]
    assert not gone(pid)
    log = Path(model.info()["worker_log"])
    model.close()
    model.close()  # idempotent
    assert gone(pid)
    text = log.read_text()
    assert "ignored stdout line before ready" in text and "closed (exit code 0)" in text


def test_bad_interpreter_and_repo_args_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ModelArgsError, match="python= is required"):
        EchoModel(repo=str(tmp_path))
    with pytest.raises(ModelArgsError, match="not an executable file"):
        echo(tmp_path, python=str(tmp_path / "missing" / "python"))
    with pytest.raises(ModelArgsError, match="not on PATH"):
        EchoModel(python="no-such-python-3.8", repo=str(tmp_path))
    with pytest.raises(ModelArgsError, match="repo= is required"):
        EchoModel(python=PY)
    with pytest.raises(ModelArgsError, match="does not take model args"):
        echo(tmp_path, ckpt="x")
    assert guess_suffix(png((1, 2, 3))) == ".png" and guess_suffix(b"RIFF\0\0\0\0WAVEfmt ") == ".wav" and guess_suffix(b"??") == ".bin"


def python38() -> str | None:
    """A Python 3.8 interpreter (NExT-GPT's environment version), if this machine has one."""
    for candidate in (shutil.which("python3.8"), *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))):
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_worker_scripts_run_on_python38(tmp_path: Path) -> None:
    py38 = python38()
    if py38 is None:
        pytest.skip("no python3.8 on this machine: the scripts' 3.8 compatibility is only linted (ruff target py38)")
    messages = [
        {"role": "system", "parts": [{"type": "text", "text": "sys"}]},
        {
            "role": "user",
            "parts": [{"type": "image", "path": "/a b/x.png"}, {"type": "audio", "path": "/y.wav"}, {"type": "text", "text": "q"}],
        },
    ]
    probe = """
import json, sys
sys.path.insert(0, sys.argv[1])
import minigpt4_worker, nextgpt_worker, openflamingo_worker
messages, links = json.loads(sys.argv[2]), sys.argv[3]
outputs = ["Hi [IMG0] [IMG1]###x", {"aud": ["Hi there [AUD0]"]}]
flamingo = [{"role": "user", "parts": messages[1]["parts"][:1]}]
print(json.dumps([nextgpt_worker.build_prompt(messages, links)[0], openflamingo_worker.build_prompt(flamingo)[0],
                  nextgpt_worker.collect(outputs, links, {})]))
"""
    (tmp_path / "links").mkdir()
    out = subprocess.run(
        [py38, "-c", probe, str(SCRIPTS_DIR), json.dumps(messages), str(tmp_path / "links")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    prompt, flamingo, collected = json.loads(out.stdout)
    link = next((tmp_path / "links").iterdir())
    assert os.readlink(link) == "/a b/x.png"  # the path with a space reaches NExT-GPT as a safe symlink
    assert prompt == f"### Human: <Image>{link}</Image>  <Audio>/y.wav</Audio>  sys\nq"
    assert flamingo == "<image>"
    assert collected["text"] == "Hi there" and collected["signal_tokens"] == {"image": True, "audio": True, "video": False}
    model = echo(tmp_path, python=py38)
    try:
        ok, failed = model.generate([req("a", "hello"), req("b", "fail")])
        assert ok.text == "echo: hello" and "asked to fail" in (failed.error or "")
    finally:
        model.close()


# --------------------------------------------------------------------------- (b) NExT-GPT


NG_ARGS = {
    "timeout": "60",  # bounds a hang if something regresses
    "startup_timeout": "120",
    "device": "cpu",
    "dtype": "float32",
    "num_inference_steps_for_img": "2",
    "num_frames": "3",
    "height": "16",
    "width": "24",
    "audio_length_in_s": "0.25",
}


@pytest.fixture(scope="module")
def nextgpt(tmp_path_factory: pytest.TempPathFactory) -> Any:
    repo = fakes.nextgpt_repo(tmp_path_factory.mktemp("ng"))
    model = build_model("nextgpt", {"python": PY, "repo": str(repo), **NG_ARGS})
    yield model, repo
    model.close()


def calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_nextgpt_image_generation_with_media_inputs(nextgpt: Any, tmp_path: Path) -> None:
    model, repo = nextgpt
    image = png((0, 0, 255))
    audio = wav_file(tmp_path / "in put.wav")  # a space: the worker must hand NExT-GPT a safe path
    gen = GenerationConfig(max_new_tokens=40, seed=1)
    request = req(
        "ng1", MediaPart("image", data=image), MediaPart("audio", path=str(audio)), "show me a picture of it", out="image", gen=gen
    )
    [resp] = model.generate([request])
    assert resp.error is None, resp.error
    assert resp.text == f"I was given image {sha(image)[:8]}, audio {sha(audio.read_bytes())[:8]}."
    assert resp.meta["signal_tokens"] == {"image": True, "audio": False, "video": False}
    assert "[IMG0] [IMG1] [IMG2] [IMG3]" in resp.meta["raw_text"][0]
    [art] = resp.artifacts
    assert art.modality == "image" and art.format == "png" and (art.meta["width"], art.meta["height"]) == (32, 32)
    call = calls(repo / "NExT-GPT-Lagacy" / "code" / "calls.jsonl")[-1]
    match = re.fullmatch(r"### Human: <Image>(\S+\.png)</Image>  <Audio>(\S+\.wav)</Audio>  show me a picture of it", call["prompt"])
    assert match is not None, call["prompt"]
    assert os.path.realpath(match.group(2)) == str(audio)  # a symlink to our file
    assert (call["image_paths"], call["audio_paths"], call["video_paths"]) == ([match.group(1)], [match.group(2)], [])
    assert (call["max_num_imgs"], call["max_num_vids"], call["max_num_auds"]) == (1, 0, 0)
    assert call["temperature"] == 0.01 and call["top_p"] == 1.0 and call["max_tgt_len"] == 40 and call["stops_id"] == [[835]]
    assert (call["num_inference_steps_for_img"], call["guidance_scale_for_img"]) == (2, 7.5)


def test_nextgpt_text_answer_reports_and_strips_signal_tokens(nextgpt: Any) -> None:
    model, _ = nextgpt
    plain, asked = model.generate([req("ng2", "what is this?"), req("ng3", "could you draw a picture of a cat?")])
    assert plain.text == "Hello. Enjoy!" and plain.meta["signal_tokens"] == {"image": False, "audio": False, "video": False}
    assert asked.text == "Hello. Enjoy!" and asked.artifacts == []  # the tokens were emitted but no image was asked for
    assert asked.meta["signal_tokens"]["image"] is True and "[IMG3]" in asked.meta["raw_text"][0]
    assert strip_signal_tokens("a [IMG0] [IMG1]  b [VID23][AUD7] c") == "a b c"
    assert nextgpt_worker.clean("Sure [AUD0] [AUD1] ok###Human: more") == "Sure ok"


def test_nextgpt_audio_video_outputs_and_seeds(nextgpt: Any) -> None:
    model, _ = nextgpt
    video, audio = model.generate([req("v", "make a video clip", out="video"), req("a", "play a sound", out="audio")])
    assert video.meta["signal_tokens"]["video"] is True and audio.meta["signal_tokens"]["audio"] is True
    frames, fps = decode_video(MediaPart("video", data=video.artifacts[0].data))
    assert frames.shape == (3, 16, 24, 3) and fps == pytest.approx(8.0)
    samples, rate = MediaPart("audio", data=audio.artifacts[0].data).load_audio()
    assert rate == 16000 and samples.shape == (4000,)
    assert np.corrcoef(samples, 0.5 * np.sin(np.arange(4000) * 0.05))[0, 1] > 0.99  # the generator's waveform survived WAV encoding
    again = model.generate([req("v2", "make a video clip", out="video"), req("v", "make a video clip", out="video")])
    assert again[1].artifacts[0].sha256 == video.artifacts[0].sha256  # same request, other batch position: same video
    assert again[0].artifacts[0].sha256 != video.artifacts[0].sha256  # another sample id: another seed


def test_nextgpt_conversation_prompt(nextgpt: Any) -> None:
    model, repo = nextgpt
    turns = (
        Message("system", (TextPart("You are terse."),)),
        Message("user", (TextPart("hi"),)),
        Message("assistant", (TextPart("hello"),)),
    )
    [resp] = model.generate([req("conv", "and now?", turns=turns)])
    assert resp.error is None
    expected = "### Human:  You are terse.\nhi\n### Assistant: hello\n### Human:  and now?"
    assert calls(repo / "NExT-GPT-Lagacy" / "code" / "calls.jsonl")[-1]["prompt"] == expected
    info = model.info()["worker"]
    assert info["signal_tokens"] == {"image": 4, "audio": 8, "video": 24} and info["delta_tensors"] == 10


def test_nextgpt_refuses_a_delta_checkpoint_that_leaves_weights_random(tmp_path: Path) -> None:
    repo = fakes.nextgpt_repo(tmp_path, delta=fakes.nextgpt_delta(drop=("gen_text_hidden_fcs_audio.0.weight",)))
    model = build_model("nextgpt", {"python": PY, "repo": str(repo), **NG_ARGS})
    try:
        with pytest.raises(WorkerStartError, match=r"lacks 1 trained weights .*gen_text_hidden_fcs_audio\.0\.weight"):
            model.generate([req("x", "hi")])
    finally:
        model.close()

    class Result:
        unexpected_keys: ClassVar[list[str]] = ["llama_proj.extra"]
        missing_keys: ClassVar[list[str]] = []

    with pytest.raises(RuntimeError, match="does not fit this code"):
        nextgpt_worker.check_delta(Result(), "delta.pt")


def test_nextgpt_args_fingerprint_and_registry(tmp_path: Path) -> None:
    repo = fakes.nextgpt_repo(tmp_path)
    assert get_model_class("nextgpt").capabilities.output_modalities == frozenset({"text", "image", "audio", "video"})
    with pytest.raises(ModelArgsError, match="does not look like a NExT-GPT checkout"):
        build_model("nextgpt", {"python": PY, "repo": str(tmp_path)})
    with pytest.raises(ModelArgsError, match=r"ckpt=.*is not an existing folder"):
        build_model("nextgpt", {"python": PY, "repo": str(repo), "ckpt": str(tmp_path / "nope")})
    with pytest.raises(ModelArgsError, match="no Vicuna checkpoint"):
        build_model("nextgpt", {"python": PY, "repo": str(repo), "vicuna_version": "13b"})
    code = repo / "NExT-GPT-Lagacy" / "code"
    assert build_model("nextgpt", {"python": PY, "repo": str(code)}).code_dir == code  # repo= may be the code folder

    def fp(**extra: str) -> str:
        return build_model("nextgpt", {"python": PY, "repo": str(repo), **extra}).fingerprint()

    base = fp()
    assert fp(timeout="5", startup_timeout="9") == base  # operational args do not change outputs
    assert fp(num_inference_steps_for_img="10") != base
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    first = build_model("nextgpt", {"python": PY, "repo": str(repo)})
    assert first.repo_commit is not None and len(first.repo_commit) == 40 and first.fingerprint() != base
    subprocess.run([*git, "commit", "-qm", "two", "--allow-empty"], check=True)
    assert fp() != first.fingerprint()


# --------------------------------------------------------------------------- (c) MiniGPT-4, OpenFlamingo


FAKE_SYSTEM = "Fake MiniGPT-4 system text with <Img>ImageContent</Img>."


def test_minigpt4_through_the_demo_chat(tmp_path: Path) -> None:
    repo, ckpt, vicuna = fakes.minigpt4_repo(tmp_path)
    with pytest.raises(ModelArgsError, match="ckpt= is required"):
        build_model("minigpt4", {"python": PY, "repo": str(repo)})
    args = {"python": PY, "repo": str(repo), "ckpt": str(ckpt), "llama_model": str(vicuna), "device": "cpu", "timeout": "60"}
    model = build_model("minigpt4", args)
    try:
        greedy = req("m1", MediaPart("image", data=png((10, 200, 10))), "What colour is it?", gen=GenerationConfig(max_new_tokens=60))
        sampled = req(
            "m2", MediaPart("image", data=png((200, 10, 10))), "And this?", gen=GenerationConfig(max_new_tokens=60, temperature=0.7)
        )
        two = req("m3", MediaPart("image", data=png((1, 1, 1))), MediaPart("image", data=png((1, 1, 1))), "both?")
        out = model.generate([greedy, sampled, two, req("m4", "no image")])
        prompt = f"{FAKE_SYSTEM}###Human: <Img><ImageHere></Img> What colour is it?###Assistant: "
        assert out[0].error is None and out[0].text == f"The image is green. [{sha(prompt.encode())[:8]}]"
        assert re.fullmatch(r"The image is red\. \[[0-9a-f]{8}\] [a-z]{6}", out[1].text), out[1].text
        assert "exactly one image" in (out[2].error or "") and "this request has 0" in (out[3].error or "")
        m1, m2 = calls(repo / "calls.jsonl")
        assert m1["prompt"] == prompt and m1["do_sample"] is False and m1["stopping"] is True
        assert (m1["num_beams"], m1["repetition_penalty"], m1["max_new_tokens"]) == (1, 1.05, 60)
        assert m2["do_sample"] is True and m2["temperature"] == 0.7
        assert out[0].meta.get("signal_tokens") is None and model.info()["worker"]["model_type"] == "pretrain_vicuna0"
        assert model.generate([sampled])[0].text == out[1].text  # seeded sampling is reproducible
    finally:
        model.close()


def test_openflamingo_interleaved_prompt_and_checkpoint_check(tmp_path: Path) -> None:
    repo, checkpoint, lm = fakes.openflamingo_repo(tmp_path, every=2)
    base = {"python": PY, "repo": str(repo), "checkpoint": str(checkpoint), "lang_encoder": str(lm), "device": "cpu", "timeout": "60"}
    model = build_model("openflamingo", {**base, "cross_attn_every_n_layers": "2"})
    try:
        shot = (
            Message("user", (MediaPart("image", data=png((0, 0, 250))), TextPart("Output:"))),
            Message("assistant", (TextPart("blue"),)),
        )
        first, fewshot, short, none = model.generate(
            [
                req("f1", MediaPart("image", data=png((250, 0, 0))), "Output:"),
                req("f2", MediaPart("image", data=png((0, 250, 0))), "Output:", turns=shot),
                req("f3", MediaPart("image", data=png((250, 0, 0))), "Output:", gen=GenerationConfig(max_new_tokens=2)),
                req("f4", "no image"),
            ]
        )
        assert (first.text, first.finish_reason) == ("red", "stop")
        assert fewshot.text == "blue and green" and short.finish_reason == "length" and short.text == "r"
        assert "at least one image" in (none.error or "")
        c1, c2, _ = calls(repo / "calls.jsonl")
        assert c1["prompt"] == "<image>Output:" and c2["prompt"] == "<image>Output:blue<|endofchunk|><image>Output:"
        assert (c1["num_beams"], c1["length_penalty"], c1["images"], c2["images"]) == (3, 0.0, 1, 2)
        assert model.info()["worker"]["checkpoint_tensors"] == 6 and model.card.llm_backbone == "mpt-tiny"
    finally:
        model.close()
    wrong = build_model("openflamingo", {**base, "cross_attn_every_n_layers": "1"})
    try:
        with pytest.raises(WorkerStartError, match=r"4 perceiver/cross-attention weights not set.*cross_attn_every_n_layers"):
            wrong.generate([req("x", MediaPart("image", data=png((1, 2, 3))), "Output:")])
    finally:
        wrong.close()
