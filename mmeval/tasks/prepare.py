"""Build the local datasets of the generation catalogue from the official releases.

The text->image / ->audio / ->video benchmarks have no canonical hub copy with the media
included, so their tasks read a local ``data.jsonl`` that this module writes from the files a
user downloads from the official sources (listed in each task's description):

    mmeval data prepare coco-t2i --annotations captions_val2014.json --media val2014/ --n 30000 \\
        --out ~/.cache/mmeval/data/coco_t2i_30k
    mmeval data prepare audiocaps --annotations audiocaps/test.csv --media audiocaps_test_wav/ \\
        --out ~/.cache/mmeval/data/audiocaps_test
    mmeval data prepare msrvtt --annotations MSRVTT_JSFUSION_test.csv --media MSRVTT/videos/all/ \\
        --out ~/.cache/mmeval/data/msrvtt_1ka_test

Selections are deterministic (a seeded shuffle, recorded in ``prepare.json`` with the sha256 of
the annotation file), so two users who prepare COCO-30k from the same annotations evaluate on
the same 30,000 prompts. Media are never copied: ``<out>/media`` is a symbolic link to the
media folder and documents name files relative to it (mmeval refuses media paths that leave a
dataset's folder). A document whose file is missing is left out and counted, never kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from mmeval.tasks.loading import DatasetError

SEED = "mmeval/prepare/v1"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _link_media(out: Path, media: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    link = out / "media"
    if link.is_symlink() or link.exists():
        if not link.is_symlink():
            raise DatasetError(f"{link} exists and is not a link; remove it or choose another --out")
        link.unlink()
    link.symlink_to(media.resolve(), target_is_directory=True)


def _write(out: Path, media: Path, rows: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    _link_media(out, media)
    tmp = out / ".data.jsonl.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out / "data.jsonl")
    info = {**info, "media": str(media.resolve()), "n": len(rows), "seed": SEED}
    (out / "prepare.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def coco_t2i(annotations: Path, media: Path, out: Path, n: int) -> dict[str, Any]:
    """``n`` distinct images of a COCO captions file, one randomly chosen caption each (the
    "30K captions of val2014" protocol of Imagen, GigaGAN and others; ``n=5000`` for COCO-5K)."""
    try:
        doc = json.loads(annotations.read_text())
        names = {im["id"]: im["file_name"] for im in doc["images"]}
        caps: dict[int, list[str]] = defaultdict(list)
        for a in doc["annotations"]:
            caps[a["image_id"]].append(a["caption"].strip())
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{annotations}: not a COCO captions file (needs images[].file_name, annotations[].caption): {exc}") from exc
    rng = random.Random(SEED)
    ids = sorted(i for i in caps if i in names)
    rng.shuffle(ids)
    rows, missing = [], 0
    for image_id in ids:
        if len(rows) == n:
            break
        path = media / names[image_id]
        if not path.is_file():
            missing += 1
            continue
        rows.append({"image_id": image_id, "caption": rng.choice(sorted(caps[image_id])), "image": f"media/{names[image_id]}"})
    if len(rows) < n:
        raise DatasetError(f"only {len(rows)} of the {n} requested images were found under {media} ({missing} missing)")
    return _write(
        out, media, rows, {"source": "coco-t2i", "annotations": str(annotations), "sha256": _sha256(annotations), "missing": missing}
    )


def audiocaps(annotations: Path, media: Path, out: Path, n: int | None = None) -> dict[str, Any]:
    """AudioCaps ``test.csv`` (audiocap_id, youtube_id, start_time, caption) + a folder of clips
    named ``<youtube_id>_<start_time>.<ext>`` or ``<youtube_id>.<ext>`` (YouTube clips vanish:
    the missing count is recorded, and papers' AudioCaps numbers differ partly for this reason).
    One document per clip, with all its captions (``captions``) and the first as ``caption``."""
    by_clip: dict[tuple[str, str], list[str]] = defaultdict(list)
    try:
        with annotations.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                by_clip[(row["youtube_id"], str(int(float(row["start_time"]))))].append(row["caption"].strip())
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{annotations}: not an AudioCaps csv (needs youtube_id, start_time, caption): {exc}") from exc
    files = {p.stem: p for p in media.iterdir() if p.is_file()} if media.is_dir() else {}
    rows, missing = [], 0
    for (yid, start), captions in sorted(by_clip.items()):
        path = files.get(f"{yid}_{start}") or files.get(f"{yid}_{start}.000") or files.get(yid)
        if path is None:
            missing += 1
            continue
        rows.append({"clip_id": f"{yid}_{start}", "caption": captions[0], "captions": captions, "audio": f"media/{path.name}"})
    rows = rows[:n] if n else rows
    if not rows:
        raise DatasetError(f"no AudioCaps clip of {annotations} was found under {media}")
    return _write(
        out, media, rows, {"source": "audiocaps", "annotations": str(annotations), "sha256": _sha256(annotations), "missing": missing}
    )


def msrvtt(annotations: Path, media: Path, out: Path, n: int | None = None) -> dict[str, Any]:
    """MSR-VTT: the 1k-A test csv (``video_id``, ``sentence``; one caption per video) or the
    full ``test_videodatainfo.json`` / ``*_videodatainfo.json`` (videos + 20 sentences each,
    test split). One document per video with ``captions`` and the first as ``caption``."""
    caps: dict[str, list[str]] = defaultdict(list)
    try:
        if annotations.suffix == ".json":
            doc = json.loads(annotations.read_text())
            test = {v["video_id"] for v in doc["videos"] if v.get("split", "test") == "test"}
            for s in doc["sentences"]:
                if s["video_id"] in test:
                    caps[s["video_id"]].append(s["caption"].strip())
        else:
            with annotations.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    caps[row["video_id"]].append(row["sentence"].strip())
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{annotations}: not an MSR-VTT annotation file: {exc}") from exc
    rows, missing = [], 0
    for vid in sorted(caps, key=lambda v: (len(v), v)):  # video7 before video10
        path = next((p for p in (media / f"{vid}.mp4", media / f"{vid}.avi", media / f"{vid}.webm") if p.is_file()), None)
        if path is None:
            missing += 1
            continue
        rows.append({"video_id": vid, "caption": caps[vid][0], "captions": caps[vid], "video": f"media/{path.name}"})
    rows = rows[:n] if n else rows
    if not rows:
        raise DatasetError(f"no MSR-VTT video of {annotations} was found under {media}")
    return _write(
        out, media, rows, {"source": "msrvtt", "annotations": str(annotations), "sha256": _sha256(annotations), "missing": missing}
    )


PREPARERS = {"coco-t2i": coco_t2i, "audiocaps": audiocaps, "msrvtt": msrvtt}
