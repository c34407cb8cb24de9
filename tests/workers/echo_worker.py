"""A protocol test worker built on worker_loop: it echoes, and misbehaves on request.

Run as ``python echo_worker.py '<config json>'`` (stdlib + numpy/Pillow for media). The last
user text selects the behaviour:

* ``crash``: write a traceback-like line to stderr and exit with code 3 mid-request;
* ``hang``: sleep for an hour (the host must time out and kill it);
* ``fail``: raise, so the response carries an error;
* ``noise``: print to stdout through Python and through fd 1 (both must land in the log);
* ``corrupt``: write a non-JSON line on the real stdout, then answer normally;
* ``outside``: claim a generated file outside output_dir;
* anything else: echo the text, report each input file's sha256, and write one generated file
  of the requested output modality (seeded by the request's seed).

Config (argv[1]): ``{"mode": "fatal" | "exit" | "slow" | "old_protocol" | "noisy_start"}`` for
start-up failures, and ``{"delay": seconds}`` for a slow load.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "mmeval" / "models" / "workers" / "scripts"))

from worker_loop import serve, text_of
from worker_media import save_apng, save_png, save_wav

RAW_STDOUT = os.dup(1)  # taken before serve() protects fd 1: only the misbehaviours use it


def load(config: dict) -> tuple:
    mode = config.get("mode")
    if mode == "noisy_start":
        os.write(RAW_STDOUT, b"banner printed before the handshake\n")
    if mode == "fatal":
        raise FileNotFoundError("no checkpoint at /nowhere/model.pt (set ckpt=)")
    if mode == "exit":
        print("loader giving up", file=sys.stderr)
        os._exit(2)
    if mode == "old_protocol":
        os.write(RAW_STDOUT, b'{"type": "ready", "protocol": 0, "info": {}}\n')
        time.sleep(3600)
    time.sleep(float(config.get("delay", 0)))
    print("loading the echo model (this print must not reach the protocol)")
    return handle, {"echo": True, "pid": os.getpid(), "config": config}


def handle(request: dict) -> dict:
    user = [m for m in request["messages"] if m["role"] == "user"]
    command = text_of(user[-1]).strip() if user else ""
    if command == "crash":
        print("echo worker: crashing on purpose (RuntimeError: boom)", file=sys.stderr, flush=True)
        os._exit(3)
    if command == "hang":
        time.sleep(3600)
    if command == "fail":
        raise ValueError("asked to fail")
    if command == "noise":
        print("noise through print()")
        os.write(1, b"noise through fd 1\n")
    if command == "corrupt":
        os.write(RAW_STDOUT, b"this is not json\n")
    out_dir = request["output_dir"]
    if command == "outside":
        stray = os.path.join(os.path.dirname(os.path.dirname(out_dir)), "stray.png")
        save_png(_pixels(1), stray)
        return {"text": "look elsewhere", "media": [{"modality": "image", "path": stray, "format": "png"}]}
    inputs = []
    for m in request["messages"]:
        for p in m["parts"]:
            if p["type"] != "text":
                with open(p["path"], "rb") as fh:
                    inputs.append(
                        {"type": p["type"], "sha256": hashlib.sha256(fh.read()).hexdigest(), "suffix": os.path.splitext(p["path"])[1]}
                    )
    seed = request["generation"]["seed"]
    media = []
    kind = request["output_modality"]
    if kind == "image":
        media.append(save_png(_pixels(seed), os.path.join(out_dir, "image.png")))
    elif kind == "audio":
        import numpy as np

        t = np.arange(1600) / 16000.0
        media.append(save_wav(0.5 * np.sin(2 * np.pi * (200 + seed % 200) * t), 16000, os.path.join(out_dir, "audio.wav")))
    elif kind == "video":
        import numpy as np

        frames = [np.full((6, 8, 3), 40 * i, dtype=np.uint8) for i in range(3)]
        media.append(save_apng(frames, 4.0, os.path.join(out_dir, "video.png")))
    return {
        "text": f"echo: {command}",
        "media": media,
        "signal_tokens": {"image": kind == "image", "audio": kind == "audio", "video": kind == "video"},
        "meta": {
            "inputs": inputs,
            "pid": os.getpid(),
            "generation": request["generation"],
            "roles": [m["role"] for m in request["messages"]],
        },
        "timings": {"echo_s": 0.0},
    }


def _pixels(seed: int) -> object:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)


if __name__ == "__main__":
    raise SystemExit(serve(load))
