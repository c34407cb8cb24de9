"""Generated media through the runner: content-addressed artifacts, cache round trips, the
media parser, --metric-args, and the cascade adapter (with the synth-audio generator)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mmeval.engine.artifacts import ArtifactStore, relative_path
from mmeval.engine.runner import RunConfig, evaluate
from mmeval.metrics.base import MetricArgsError
from mmeval.models.base import ModelArgsError, build_model, get_model_class
from mmeval.types import Artifact, GenerationConfig, Message, Request, Response, TextPart
from tests.conftest import write_task

TONE = "a steady 440 Hz tone lasting 1 seconds"

T2A_YAML = """\
task: local_t2a
version: 1
dataset: {path: data.jsonl}
doc_id: id
prompt:
  - text: "{{ caption }}"
output_modality: audio
target: audio
parse: {name: media, modality: audio}
metrics: [signal_token_rate]
"""


@pytest.fixture
def t2a_task(tmp_path: Path) -> Path:
    import numpy as np

    from mmeval.media.audio import encode_wav
    from mmeval.media.synth import parse, render

    captions = [TONE, "3 short beeps at 880 Hz", "white noise lasting 0.5 seconds", "the sound of rain", TONE]
    root = tmp_path / "t2a"
    (root / "audio").mkdir(parents=True)
    rows = []
    for i, c in enumerate(captions):
        sound = parse(c) or parse(TONE)
        (root / "audio" / f"{i}.wav").write_bytes(encode_wav(render(sound, np.random.default_rng(i)), 16000))  # type: ignore[arg-type]
        rows.append({"id": f"a{i}", "caption": c, "audio": f"audio/{i}.wav"})
    return write_task(root, rows, T2A_YAML)


def cfg(task: Path | str, out: Path, model: str = "synth-audio", **kw) -> RunConfig:
    return RunConfig(model=model, tasks=[str(task)], output=out, progress=False, log=lambda _m: None, **kw)


def samples(run_dir: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- artifact store


def test_store_is_content_addressed_idempotent_and_restorable(tmp_path: Path) -> None:
    data = b"RIFF fake wav bytes"
    blobs = tmp_path / "cache.artifacts"
    store = ArtifactStore(tmp_path / "run1", blobs)
    r1 = store.store(Response(id="t/1", artifacts=[Artifact.from_bytes("audio", data, "WAV", sample_rate=16000)]))
    r2 = store.store(Response(id="t/2", artifacts=[Artifact.from_bytes("audio", data, ".wav")]))
    sha = hashlib.sha256(data).hexdigest()
    assert r1.artifacts[0].path == r2.artifacts[0].path == f"artifacts/{sha[:2]}/{sha}.wav"
    assert r1.artifacts[0].data is None and r1.artifacts[0].meta == {"sample_rate": 16000, "size_bytes": len(data)}
    assert (tmp_path / "run1" / r1.artifacts[0].path).read_bytes() == data
    assert len(list((tmp_path / "run1").rglob("*.wav"))) == 1
    # serialised responses carry paths and hashes, never bytes
    d = r1.to_dict()["artifacts"][0]
    assert set(d) == {"modality", "path", "sha256", "format", "meta"}
    again = Response.from_dict(json.loads(json.dumps(r1.to_dict())))
    # a later run restores the file from the cache's blob folder
    other = ArtifactStore(tmp_path / "run2", blobs)
    assert other.restore(again)
    assert (tmp_path / "run2" / again.artifacts[0].path).read_bytes() == data
    # ...and reports a vanished blob, so the runner regenerates
    shutil.rmtree(blobs)
    assert not ArtifactStore(tmp_path / "run3", blobs).restore(again)
    assert not ArtifactStore(tmp_path / "run4", None).restore(again)


def test_relative_path_sanitises_the_format() -> None:
    art = Artifact.from_bytes("image", b"x", "../png")
    assert relative_path(art).endswith(".png") and ".." not in relative_path(art)


# --------------------------------------------------------------------------- runner


def test_generated_audio_lands_in_the_run_and_samples(t2a_task: Path, tmp_path: Path) -> None:
    run = evaluate(cfg(t2a_task, tmp_path / "res", batch_size=2))
    res = run.tasks["local_t2a"]
    assert res.n == 5 and res.n_errors == 0
    assert res.extraction_stages == {"media": 4, "no_media": 1}  # "the sound of rain" is outside the grammar
    assert res.extraction_rate == pytest.approx(0.8)
    rows = samples(run.path, "local_t2a")
    for row in rows:
        if row["extraction"] == "no_media":
            assert row["artifacts"] == [] and row["parsed"]["media"] == []
            continue
        (art,) = row["artifacts"]
        path = run.path / art["path"]
        assert path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == art["sha256"]
        assert art["modality"] == "audio" and art["format"] == "wav" and art["sample_rate"] == 16000
        assert row["parsed"]["media"] == [art["path"]]
    # two prompts are the same tone, but each sample gets its own noise (seeded per sample id)
    assert rows[0]["artifacts"][0]["sha256"] != rows[4]["artifacts"][0]["sha256"]


def test_cache_hits_restore_artifacts_and_a_lost_blob_regenerates(t2a_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    first = evaluate(cfg(t2a_task, out))
    second = evaluate(cfg(t2a_task, out))
    assert second.tasks["local_t2a"].n_cached == 5 and second.path != first.path
    a1, a2 = samples(first.path, "local_t2a"), samples(second.path, "local_t2a")
    assert [r["artifacts"] for r in a1] == [r["artifacts"] for r in a2]
    assert all((second.path / a["path"]).is_file() for r in a2 for a in r["artifacts"])
    shutil.rmtree(out / "cache.artifacts")
    third = evaluate(cfg(t2a_task, out))
    assert third.tasks["local_t2a"].n_cached == 1  # only the text-only response had nothing to lose
    a3 = samples(third.path, "local_t2a")
    assert [r["artifacts"] for r in a3] == [r["artifacts"] for r in a1]  # same seeds, same bytes
    assert all((third.path / a["path"]).is_file() for r in a3 for a in r["artifacts"])


def test_seed_changes_generated_media_even_with_a_warm_cache(t2a_task: Path, tmp_path: Path) -> None:
    a = evaluate(cfg(t2a_task, tmp_path / "res", seed=0))
    b = evaluate(cfg(t2a_task, tmp_path / "res", seed=1))  # same cache: the seed must be in the key
    assert b.tasks["local_t2a"].n_cached == 0
    sa, sb = samples(a.path, "local_t2a"), samples(b.path, "local_t2a")
    assert sa[0]["artifacts"][0]["sha256"] != sb[0]["artifacts"][0]["sha256"]


def test_unknown_metric_arg_fails_before_the_model_is_built(t2a_task: Path, tmp_path: Path) -> None:
    with pytest.raises(MetricArgsError, match=r"inception_weigths.*no metric"):
        evaluate(cfg(t2a_task, tmp_path / "res", metric_args={"inception_weigths": "/x"}))
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").glob("*/run.json"))


def test_signal_tokens_are_averaged_when_reported(tmp_path: Path) -> None:
    from mmeval.metrics.base import ParseContext
    from mmeval.metrics.media import MediaParser, SignalTokenRate

    parser, metric = MediaParser(modality="image"), SignalTokenRate()
    ctx = ParseContext(doc_id="x")
    art = Artifact("image", "artifacts/ab/ab.png", "ab", "png")
    with_img, stage = parser.parse_response(Response(id="x", artifacts=[art], meta={"signal_tokens": {"image": True}}), ctx)
    assert stage == "media" and with_img["signal_tokens"] is True
    without, stage = parser.parse_response(Response(id="x", text="a cat", meta={"signal_tokens": {"image": False}}), ctx)
    assert stage == "no_media" and without["signal_tokens"] is False
    unreported, _ = parser.parse_response(Response(id="x", text="a cat"), ctx)
    assert metric.score_batch([with_img, without, unreported], [None] * 3, [ctx] * 3) == [
        {"signal_token_rate": 1.0},
        {"signal_token_rate": 0.0},
        {},
    ]


# --------------------------------------------------------------------------- cascade


def _req(text: str, modality: str = "audio", rid: str = "t/1") -> Request:
    return Request(id=rid, messages=(Message("user", (TextPart(text),)),), generation=GenerationConfig(seed=0), output_modality=modality)  # type: ignore[arg-type]


def test_cascade_text_model_writes_the_prompt_generator_renders_it() -> None:
    model = build_model("cascade", {"text": "constant", "text.answer": f"  {TONE}\n", "generator": "synth-audio"})
    (resp,) = model.generate([_req("make me something pleasant")])
    assert resp.ok and resp.text == TONE
    assert resp.meta["generator_prompt"] == TONE and resp.meta["understood"] is True
    assert len(resp.artifacts) == 1 and resp.artifacts[0].modality == "audio"
    # a text request goes to the text model alone
    (text_resp,) = model.generate([_req("what is 2+2?", modality="text")])
    assert text_resp.text == TONE.strip() or text_resp.text.strip() == TONE
    assert text_resp.artifacts == []
    info = model.info()
    assert info["text"]["name"] == "constant" and info["generator"]["name"] == "synth-audio"
    assert model.card.modality_generator and "cascade" in (model.card.output_projector or "")


def test_cascade_without_rewrite_sends_the_request_text() -> None:
    model = build_model("cascade", {"text": "constant", "generator": "synth-audio", "rewrite": "false"})
    (resp,) = model.generate([_req("3 short beeps at 880 Hz")])
    assert resp.meta["generator_prompt"] == "3 short beeps at 880 Hz" and resp.meta["sound"] == "3 short beeps at 880 Hz"


def test_cascade_reports_which_half_failed() -> None:
    model = build_model("cascade", {"text": "constant", "text.answer": " ", "generator": "synth-audio"})
    (resp,) = model.generate([_req("anything")])
    assert not resp.ok and "empty description" in (resp.error or "")


def test_cascade_args_and_capabilities() -> None:
    cls = get_model_class("cascade")
    caps = cls.capabilities_for({"text": "constant", "generator": "synth-audio"})
    assert caps.output_modalities == {"text", "audio"} and "image" in caps.input_modalities
    with pytest.raises(ModelArgsError, match="generator=<adapter name>"):
        cls.check_args({"text": "constant"})
    with pytest.raises(ModelArgsError, match=r"synth-audio: rate must be an integer"):
        build_model("cascade", {"text": "constant", "generator": "synth-audio", "generator.rate": "fast"})
    with pytest.raises(ModelArgsError, match="does not take model args"):
        cls.check_args({"text": "constant", "generator": "synth-audio", "steps": "3"})
    with pytest.raises(ModelArgsError, match=r"generator=constant takes no text|text=synth-audio produces no text"):
        cls.capabilities_for({"text": "synth-audio", "generator": "constant"})


def test_cascade_through_the_runner(t2a_task: Path, tmp_path: Path) -> None:
    args = {"text": "constant", "text.answer": TONE, "generator": "synth-audio"}
    run = evaluate(cfg(t2a_task, tmp_path / "res", model="cascade", model_args=args, batch_size=3))
    res = run.tasks["local_t2a"]
    assert res.extraction_stages == {"media": 5}  # the LLM half rewrote even "the sound of rain"
    manifest = json.loads((run.path / "run.json").read_text())
    assert manifest["model"]["card"]["modality_generator"].startswith("rule-based")
    assert manifest["model"]["info"]["generator"]["name"] == "synth-audio"
