"""Generation tasks end to end through `mmeval run`: generators write media as artifacts, and
the distribution metrics (FID/KID/IS, FAD, FVD) and the model-based ones (CLIPScore, CLAP score,
CLIPSIM) are reported with n, on the demo fixtures and on every generation catalogue task
(localized: real task YAML, small local data with the catalogue's columns, random-init
extractor weights loaded through the same --metric-args paths users give)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmeval.cli import app
from mmeval.engine.runner import RunConfig, evaluate
from mmeval.media import synth
from mmeval.media.audio import encode_wav
from mmeval.media.video import encode_apng
from mmeval.metrics.tiny_clap import tiny_clap_dir
from mmeval.metrics.tiny_clip import tiny_clip_dir
from mmeval.types import RunResult
from tests.catalogue import image_struct, localize, run_replay

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


def run(model: str, task: str | Path, out: Path, metric_args: dict[str, str], **kw: Any) -> RunResult:
    cfg = RunConfig(
        model=model, tasks=[str(task)], output=out, metric_args=metric_args, progress=False, log=lambda _m: None, batch_size=4, **kw
    )
    return evaluate(cfg)


def metrics(result: RunResult, task: str) -> dict[str, Any]:
    return json.loads((result.path / "run.json").read_text())["results"][task]["metrics"]


def samples(result: RunResult, task: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (result.path / "samples" / f"{task}.jsonl").read_text().splitlines()]


def assert_artifacts(result: RunResult, task: str, modality: str, fmt: str) -> None:
    rows = samples(result, task)
    assert rows and all(len(r["artifacts"]) == 1 for r in rows)
    for r in rows:
        art = r["artifacts"][0]
        assert art["modality"] == modality and art["format"] == fmt and (result.path / art["path"]).is_file()


def wav_struct(caption: str, seed: int) -> dict[str, Any]:
    sound = synth.parse(caption)
    assert sound is not None
    return {"bytes": encode_wav(synth.render(sound, np.random.default_rng(seed)), synth.RATE), "path": None}


# --------------------------------------------------------------------------- text -> audio


def test_demo_t2a_through_the_cli_reports_fad_and_clap_score(tmp_path: Path) -> None:
    out = tmp_path / "res"
    res = CliRunner().invoke(
        app,
        ["run", "--model", "synth-audio", "--tasks", "demo_t2a", "--limit", "24", "--batch-size", "8", "-o", str(out), "--json",
         "--metric-args", f"clap_model={tiny_clap_dir()}"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    doc = json.loads((run_dir / "run.json").read_text())
    m = doc["results"]["demo_t2a"]["metrics"]
    assert m["fad_tiny_audio"]["n"] == 24 and m["fad_tiny_audio"]["value"] >= 0
    assert m["fad_tiny_audio"]["ci_method"] == "bootstrap_se" and m["fad_tiny_audio"]["ci_low"] <= m["fad_tiny_audio"]["value"]
    assert m["clap_score"]["n"] == 24 and -1 <= m["clap_score"]["value"] <= 1
    assert doc["metric_args"] == {"clap_model": str(tiny_clap_dir())}
    config = {c["name"]: c for c in doc["tasks"]["demo_t2a"]["metric_config"]}
    assert config["clap_score"]["clap_model"] == str(tiny_clap_dir()) and config["fad"]["extractor"] == "tiny-audio"


def test_fad_separates_a_prompt_reader_from_a_generator_that_ignores_prompts(tmp_path: Path) -> None:
    margs = {"clap_model": str(tiny_clap_dir())}
    good = run("synth-audio", "demo_t2a", tmp_path / "a", margs)
    # The cascade's text half always writes "white noise": right format, wrong content.
    bad = run(
        "cascade",
        "demo_t2a",
        tmp_path / "b",
        margs,
        model_args={"text": "constant", "text.answer": "white noise lasting 1 seconds", "generator": "synth-audio"},
    )
    fg, fb = metrics(good, "demo_t2a")["fad_tiny_audio"], metrics(bad, "demo_t2a")["fad_tiny_audio"]
    assert fg["n"] == fb["n"] == 48
    assert fb["value"] > 5 * fg["value"] and fb["ci_low"] > fg["ci_high"]


def test_audiocaps_t2a_catalogue_task(tmp_path: Path) -> None:
    from mmeval.metrics.extractors import vggish

    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        caption = synth.random_sound(rng).describe()
        rows.append({"clip_id": f"yt{i}_0", "caption": caption, "captions": [caption], "audio": wav_struct(caption, 100 + i)})
    task = localize("audiocaps_t2a", rows, tmp_path / "data")
    weights = tmp_path / "vggish-random.pth"
    torch.manual_seed(0)
    torch.save(vggish.build_network().state_dict(), weights)
    result = run("synth-audio", task, tmp_path / "res", {"vggish_weights": str(weights), "clap_model": str(tiny_clap_dir())})
    m = metrics(result, "audiocaps_t2a")
    assert set(m) == {"fad_vggish", "fad_clap", "clap_score"}  # signal_token_rate: synth-audio reports no signal tokens
    assert m["fad_vggish"]["n"] == m["fad_clap"]["n"] == m["clap_score"]["n"] == 10
    assert_artifacts(result, "audiocaps_t2a", "audio", "wav")


def test_audiocaps_t2a_without_vggish_weights_fails_before_generating(tmp_path: Path) -> None:
    task = localize(
        "audiocaps_t2a", [{"clip_id": "a", "caption": "x", "captions": ["x"], "audio": wav_struct("3 short beeps at 440 Hz", 0)}], tmp_path
    )
    res = CliRunner().invoke(app, ["run", "--model", "synth-audio", "--tasks", str(task), "-o", str(tmp_path / "res")])
    assert res.exit_code == 2 and "vggish_weights" in res.output
    assert not list((tmp_path / "res").glob("*/run.json"))


def test_audio_and_video_captioning_catalogue_tasks(tmp_path: Path) -> None:
    a_rows = [{"clip_id": f"c{i}", "caption": c, "captions": [c, c.upper()], "audio": wav_struct(c, i)}
              for i, c in enumerate(["3 short beeps at 440 Hz", "white noise lasting 1 seconds"])]  # fmt: skip
    task = localize("audiocaps_caption", a_rows, tmp_path / "a")
    result = run_replay(task, {"c0": "3 short beeps at 440 Hz", "c1": "white noise lasting 1 seconds"}, tmp_path / "a")
    assert result.tasks["audiocaps_caption"].metric("bleu_4").value == pytest.approx(1.0, abs=1e-6)
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    v_rows = [{"video_id": f"video{i}", "caption": "a man sings", "captions": ["a man sings", "someone is singing"],
               "video": {"bytes": encode_apng(frames + 40 * i, 4.0), "path": None}} for i in range(2)]  # fmt: skip
    task = localize("msrvtt_caption", v_rows, tmp_path / "v")
    result = run_replay(task, {"video0": "a man sings", "video1": "a dog runs"}, tmp_path / "v")
    r = result.tasks["msrvtt_caption"]
    assert r.n == 2 and r.n_errors == 0 and 0 < r.metric("bleu_1").value < 1


# --------------------------------------------------------------------------- text -> image


def test_tiny_sd_on_demo_t2i_writes_images_and_reports_fid_kid_is_clipscore(tmp_path: Path) -> None:
    out = tmp_path / "res"
    res = CliRunner().invoke(
        app,
        ["run", "--model", "tiny-sd", "--tasks", "demo_t2i", "--limit", "12", "--batch-size", "4", "-o", str(out),
         "--metric-args", f"clip_model={tiny_clip_dir()}"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("fid", "kid", "inception_score", "clip_score"):
        assert name.split("_")[0] in res.output  # the table names them
    (run_dir,) = [p for p in out.iterdir() if (p / "run.json").exists()]
    doc = json.loads((run_dir / "run.json").read_text())
    m = doc["results"]["demo_t2i"]["metrics"]
    assert {"fid_tiny_image", "kid_tiny_image", "inception_score_tiny_image", "clip_score"} <= set(m)
    assert all(m[k]["n"] == 12 for k in ("fid_tiny_image", "kid_tiny_image", "inception_score_tiny_image", "clip_score"))
    assert (
        m["fid_tiny_image"]["value"] > 0 and m["fid_tiny_image"]["ci_low"] <= m["fid_tiny_image"]["value"] <= m["fid_tiny_image"]["ci_high"]
    )
    rows = [json.loads(x) for x in (run_dir / "samples" / "demo_t2i.jsonl").read_text().splitlines()]
    assert all(r["extraction"] == "media" and r["artifacts"][0]["format"] == "png" for r in rows)
    assert len({r["artifacts"][0]["sha256"] for r in rows}) == 12  # per-sample seeds: 12 different images
    assert doc["model"]["card"]["modality_generator"]


@pytest.mark.parametrize("task", ["coco_t2i_5k", "coco_t2i_30k"])
def test_coco_t2i_catalogue_task_with_fid_inception_weights(task: str, tmp_path: Path) -> None:
    from mmeval.metrics.extractors.inception import FIDInceptionV3

    rows = [{"image_id": i, "caption": f"a photo of thing {i}", "image": image_struct((20 * i, 100, 200 - 10 * i), 16)} for i in range(6)]
    local = localize(task, rows, tmp_path / "data")
    torch.manual_seed(0)
    net = FIDInceptionV3()
    weights = tmp_path / "pt_inception-random.pth"
    torch.save({k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}, weights)
    result = run("tiny-sd", local, tmp_path / "res", {"inception_weights": str(weights), "clip_model": str(tiny_clip_dir())})
    m = metrics(result, task)
    assert {"fid", "kid", "inception_score", "clip_score"} <= set(m)
    assert m["fid"]["n"] == m["kid"]["n"] == m["inception_score"]["n"] == 6 and m["fid"]["value"] > 0
    assert_artifacts(result, task, "image", "png")


# --------------------------------------------------------------------------- text -> video


def test_tiny_t2v_on_demo_t2v_reports_fvd_and_clipsim(tmp_path: Path) -> None:
    # tiny-t2v makes 4 frames by default; the task's FVD samples 8, so ask for 8
    short = run("tiny-t2v", "demo_t2v", tmp_path / "short", {"clip_model": str(tiny_clip_dir())}, limit=6)
    assert "fvd" in short.tasks["demo_t2v"].metric_errors and "shorter" in short.tasks["demo_t2v"].metric_errors["fvd"]
    assert short.tasks["demo_t2v"].metric("clipsim").n == 6  # the other metrics are kept
    result = run("tiny-t2v", "demo_t2v", tmp_path / "res", {"clip_model": str(tiny_clip_dir())}, limit=6, model_args={"num_frames": "8"})
    assert result.tasks["demo_t2v"].metric_errors == {}
    m = metrics(result, "demo_t2v")
    assert m["fvd_tiny_video"]["n"] == 6 and m["clipsim"]["n"] == 6
    assert_artifacts(result, "demo_t2v", "video", "apng")


def test_msrvtt_t2v_catalogue_task_with_i3d_torchscript(tmp_path: Path) -> None:
    from tests.test_video_gen_metrics import FakeI3D

    rng = np.random.default_rng(0)
    rows = [{"video_id": f"video{i}", "caption": f"clip {i}", "captions": [f"clip {i}"],
             "video": {"bytes": encode_apng(rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8), 8.0), "path": None}}
            for i in range(5)]  # fmt: skip
    task = localize("msrvtt_t2v", rows, tmp_path / "data")
    i3d = tmp_path / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(FakeI3D()), str(i3d))
    result = run("tiny-t2v", task, tmp_path / "res", {"i3d_torchscript": str(i3d), "clip_model": str(tiny_clip_dir())},
                 model_args={"num_frames": "16"})  # fmt: skip
    m = metrics(result, "msrvtt_t2v")
    assert m["fvd"]["n"] == 5 and m["clipsim"]["n"] == 5
    assert_artifacts(result, "msrvtt_t2v", "video", "apng")


# --------------------------------------------------------------------------- media generated elsewhere


def test_score_media_generated_elsewhere_and_fid_of_the_reference_set_is_zero(tmp_path: Path) -> None:
    """`mmeval score` replays image files named in a predictions file; the reference images
    themselves give FID 0 (the set against itself), other images a positive FID."""
    from mmeval.tasks.fixtures import fixture_dir

    root = fixture_dir("demo_t2i")
    rows = [json.loads(x) for x in (root / "data.jsonl").read_text().splitlines()][:16]
    same = tmp_path / "same.jsonl"
    same.write_text("".join(json.dumps({"doc_id": r["id"], "image": str(root / r["image"])}) + "\n" for r in rows))
    shifted = tmp_path / "shifted.jsonl"  # each prompt answered with the next prompt's image
    shifted.write_text(
        "".join(json.dumps({"doc_id": r["id"], "image": str(root / rows[(i + 1) % 4]["image"])}) + "\n" for i, r in enumerate(rows))
    )
    out = {}
    for name, preds in (("same", same), ("shifted", shifted)):
        res = CliRunner().invoke(
            app,
            ["score", "--tasks", "demo_t2i", "--predictions", str(preds), "--limit", "16", "-o", str(tmp_path / name),
             "--metric-args", f"clip_model={tiny_clip_dir()}", "--json"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        (run_dir,) = [p for p in (tmp_path / name).iterdir() if (p / "run.json").exists()]
        out[name] = json.loads((run_dir / "run.json").read_text())["results"]["demo_t2i"]["metrics"]
    assert out["same"]["fid_tiny_image"]["n"] == 16
    assert abs(out["same"]["fid_tiny_image"]["value"]) < 1e-6
    assert out["shifted"]["fid_tiny_image"]["value"] > 1e-3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"doc_id": "t2i000", "image": "missing.png"}) + "\n")
    res = CliRunner().invoke(app, ["score", "--tasks", "demo_t2i", "--predictions", str(bad), "--limit", "2", "-o", str(tmp_path / "bad"),
                                   "--metric-args", f"clip_model={tiny_clip_dir()}", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run_dir,) = [p for p in (tmp_path / "bad").iterdir() if (p / "run.json").exists()]
    result = json.loads((run_dir / "run.json").read_text())["results"]["demo_t2i"]
    assert result["n_errors"] == 2  # t2i000: its file is missing; t2i001: no prediction. Neither is scored.
    errors = [json.loads(x)["error"] for x in (run_dir / "samples" / "demo_t2i.jsonl").read_text().splitlines()]
    assert "missing.png" in errors[0] and "no prediction" in errors[1]
