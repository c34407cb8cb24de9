"""The generation catalogue: `mmeval data prepare` from official-format files, the task files,
and the X->text captioning tasks (audio and video in) through `replay`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mmeval.cli import app
from mmeval.metrics.base import METRICS
from mmeval.tasks.loading import DatasetError, load_docs
from mmeval.tasks.prepare import audiocaps, coco_t2i, msrvtt
from mmeval.tasks.registry import resolve_tasks, task_index
from tests.catalogue import run_replay

GENERATION_TASKS = {"coco_t2i_30k": "image", "coco_t2i_5k": "image", "audiocaps_t2a": "audio", "msrvtt_t2v": "video"}


def fake_coco(tmp: Path, n_images: int = 12, missing: tuple[int, ...] = (3,)) -> tuple[Path, Path]:
    media = tmp / "val2014"
    media.mkdir(parents=True)
    images, anns = [], []
    for i in range(n_images):
        name = f"COCO_val2014_{i:012d}.jpg"
        images.append({"id": 100 + i, "file_name": name})
        anns += [{"image_id": 100 + i, "caption": f" caption {k} of image {i} "} for k in range(5)]
        if i not in missing:
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(media / name)
    ann = tmp / "captions_val2014.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns}))
    return ann, media


def test_coco_t2i_selection_is_deterministic_one_caption_per_image(tmp_path: Path) -> None:
    ann, media = fake_coco(tmp_path)
    info = coco_t2i(ann, media, tmp_path / "a", 8)
    rows = [json.loads(x) for x in (tmp_path / "a" / "data.jsonl").read_text().splitlines()]
    assert info["n"] == 8 and len({r["image_id"] for r in rows}) == 8
    assert all((tmp_path / "a" / r["image"]).is_file() and r["caption"].startswith("caption ") for r in rows)  # stripped
    assert all(r["caption"].endswith(f"of image {r['image_id'] - 100}") for r in rows)
    coco_t2i(ann, media, tmp_path / "b", 8)
    assert (tmp_path / "a" / "data.jsonl").read_text() == (tmp_path / "b" / "data.jsonl").read_text()
    prep = json.loads((tmp_path / "a" / "prepare.json").read_text())
    assert len(prep["sha256"]) == 64 and prep["seed"]
    with pytest.raises(DatasetError, match=r"only 11 of the 12 requested images.*1 missing"):
        coco_t2i(ann, media, tmp_path / "c", 12)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DatasetError, match="not a COCO captions file"):
        coco_t2i(bad, media, tmp_path / "d", 2)


def test_audiocaps_and_msrvtt_group_captions_per_clip(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "yt1_30.wav").write_bytes(b"RIFF")
    (clips / "yt2_0.wav").write_bytes(b"RIFF")
    with (tmp_path / "test.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writerows([[1, "yt1", 30, "a dog barks"], [2, "yt1", 30, "barking"], [3, "yt2", 0, "rain"], [4, "gone", 10, "wind"]])
    info = audiocaps(tmp_path / "test.csv", clips, tmp_path / "ac")
    rows = [json.loads(x) for x in (tmp_path / "ac" / "data.jsonl").read_text().splitlines()]
    assert info["missing"] == 1 and [r["captions"] for r in rows] == [["a dog barks", "barking"], ["rain"]]

    videos = tmp_path / "videos"
    videos.mkdir()
    for v in ("video7", "video10"):
        (videos / f"{v}.mp4").write_bytes(b"\x00")
    with (tmp_path / "jsfusion.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        w.writerows([["ret0", "msr7", "video7", "a man sings"], ["ret1", "msr10", "video10", "cars race"]])
    msrvtt(tmp_path / "jsfusion.csv", videos, tmp_path / "mv")
    rows = [json.loads(x) for x in (tmp_path / "mv" / "data.jsonl").read_text().splitlines()]
    assert [r["video_id"] for r in rows] == ["video7", "video10"] and rows[1]["caption"] == "cars race"


def test_prepared_coco_loads_through_the_catalogue_task(tmp_path: Path) -> None:
    ann, media = fake_coco(tmp_path)
    res = CliRunner().invoke(
        app, ["data", "prepare", "coco-t2i", "--annotations", str(ann), "--media", str(media), "--out", str(tmp_path / "c"), "--n", "6"]
    )
    assert res.exit_code == 0, res.output
    spec = task_index()["coco_t2i_5k"]
    from dataclasses import replace

    local = replace(spec, dataset=replace(spec.dataset, path=str(tmp_path / "c")))
    data = load_docs(local)
    assert data.total == 6 and all(Path(d["image"]).is_file() for d in data.docs)
    res = CliRunner().invoke(app, ["data", "prepare", "coco-t2i", "--annotations", str(ann), "--media", str(media), "--out", "x"])
    assert res.exit_code == 2 and "--n" in res.output


@pytest.mark.parametrize("task,modality", sorted(GENERATION_TASKS.items()))
def test_generation_catalogue_entries(task: str, modality: str) -> None:
    spec = task_index()[task]
    assert spec.output_modality == modality and spec.input_modalities == {"text"}
    assert spec.parse.name == "media" and spec.parse.kwargs["modality"] == modality
    assert all(m.name in METRICS for m in spec.metrics)
    assert spec.dataset.path and "mmeval data prepare" in spec.description


@pytest.mark.parametrize("task", ["demo_audio_caption", "demo_video_caption"])
def test_x_to_text_captioning_reuses_caption_metrics(task: str, tmp_path: Path) -> None:
    (rt,) = resolve_tasks([task])
    data = load_docs(rt.spec)
    assert rt.spec.input_modalities == {"text", "audio" if "audio" in task else "video"}
    perfect = {doc_id: doc["caption"] for doc_id, doc in zip(data.doc_ids, data.docs, strict=True)}
    yaml_path = Path(rt.spec.source)
    run = run_replay(yaml_path, perfect, tmp_path)
    result = run.tasks[task]
    assert result.n == len(perfect) and result.n_errors == 0
    assert result.metric("bleu_4").value == pytest.approx(1.0, abs=1e-6)
    wrong = {k: "a completely unrelated sentence about cooking" for k in perfect}
    (tmp_path / "w").mkdir()
    worse = run_replay(yaml_path, wrong, tmp_path / "w").tasks[task]
    assert worse.metric("cider").value < result.metric("cider").value
