"""What `mmeval demo` (and `make demo`) runs: the tiny LLaVA and the baselines on the demo group,
and the tiny generators on the generation demo tasks (text -> image / audio / video)."""

from __future__ import annotations

# (model, model args, tasks). random-choice only answers multiple-choice requests, so it runs
# on demo_mcq alone; tiny-llava has no audio input, so the runner skips demo_audioqa for it.
DEMO_PLAN: list[tuple[str, dict[str, str], list[str]]] = [
    ("tiny-llava", {}, ["demo"]),
    ("constant", {"answer": "2"}, ["demo"]),
    ("random-choice", {"seed": "0"}, ["demo_mcq"]),
    ("tiny-sd", {}, ["demo_t2i"]),
    ("synth-audio", {}, ["demo_t2a"]),
    ("tiny-t2v", {"num_frames": "8"}, ["demo_t2v"]),  # demo_t2v's FVD samples 8 frames
]


def demo_metric_args(tasks: list[str]) -> dict[str, str]:
    """The tiny CLIP / CLAP models the generation demo scores with (built locally, cached)."""
    if any(t in {"demo_t2i", "demo_t2v"} for t in tasks):
        from mmeval.metrics.tiny_clip import tiny_clip_dir

        return {"clip_model": str(tiny_clip_dir())}
    if "demo_t2a" in tasks:
        from mmeval.metrics.tiny_clap import tiny_clap_dir

        return {"clap_model": str(tiny_clap_dir())}
    return {}
