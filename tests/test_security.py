"""Bad input and security: task and leaderboard files are data, never code; a task names its
code hooks only from trusted code; dataset media stay inside the dataset root; API keys never
reach a file, a log line, the console or the site."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from mmeval.api import evaluate
from mmeval.cli import app
from mmeval.metrics import base as metrics_base
from mmeval.metrics.base import UntrustedHookError, load_hook
from mmeval.report.leaderboard import LeaderboardError, load_leaderboard
from mmeval.tasks.spec import TaskSpecError, load_spec_file
from tests.conftest import QA_YAML, write_task
from tests.fake_api_server import FakeApiServer

runner = CliRunner()
QA_ROWS = [{"id": f"q{i}", "question": f"question {i}?", "answer": "red", "group": i} for i in range(3)]


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2 with an ``error:`` message, not a traceback."""
    output = result.output
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in output and "error:" in output
    flat = " ".join(output.split())  # rich wraps long lines
    for fragment in fragments:
        assert fragment in flat, (fragment, flat)


# --------------------------------------------------------------------------- YAML is data

UNSAFE_TAGS = {
    "object/apply": '!!python/object/apply:os.system ["touch PWNED"]',
    "name": "!!python/name:os.system",
}


@pytest.mark.parametrize("tag", sorted(UNSAFE_TAGS))
def test_task_yaml_with_python_tags_is_refused_naming_the_file(tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where "touch PWNED" would leave its file
    path = write_task(tmp_path / "t", QA_ROWS, QA_YAML + f"description: {UNSAFE_TAGS[tag]}\n")
    line = len(QA_YAML.splitlines()) + 1
    with pytest.raises(TaskSpecError) as err:
        load_spec_file(path)
    message = str(err.value)
    assert re.match(
        rf"{re.escape(str(path))}: line {line}, column 14: invalid YAML: tag '!!python/{tag}:os.system' is not allowed", message
    )
    assert "\n" not in message and "remove the tag" in message
    # The same through the CLI, given as a path and found through --include-path.
    result = cli("run", "--model", "test-hash", "--tasks", str(path), "--output", str(tmp_path / "res"))
    assert_user_error(result, f"{path}: line {line}", "is not allowed")
    result = cli(
        "run", "--model", "test-hash", "--tasks", "local_qa", "--include-path", str(path.parent), "--output", str(tmp_path / "res")
    )
    assert_user_error(result, f"line {line}", "is not allowed")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("tag", sorted(UNSAFE_TAGS))
def test_leaderboard_yaml_with_python_tags_is_refused_naming_the_file(tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "board.yaml"
    path.write_text(f"name: x\ntitle: {UNSAFE_TAGS[tag]}\nbenchmarks: [{{task: local_qa, metric: exact_match}}]\n")
    with pytest.raises(LeaderboardError) as err:
        load_leaderboard(path)
    message = str(err.value)
    assert message.startswith(f"{path}: line 2, column 8: invalid YAML: tag '!!python/{tag}:os.system' is not allowed")
    assert "\n" not in message and "Leaderboard definition files are plain data" in message
    for command in ("show", "build"):
        result = cli(
            "leaderboard", command, str(tmp_path), "--config", str(path), *(["--out", str(tmp_path / "site")] if command == "build" else [])
        )
        assert_user_error(result, f"{path}: line 2", "is not allowed")
    assert not (tmp_path / "PWNED").exists()


# --------------------------------------------------------------------------- code hooks


@pytest.fixture
def sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An importable module outside trusted code; importing it leaves a marker file."""
    name = f"mmeval_sentinel_{uuid.uuid4().hex[:12]}"
    marker = tmp_path / "IMPORTED"
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n\n\ndef factory(**kwargs):\n    return kwargs\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    yield name, marker
    sys.modules.pop(name, None)


# How a task file might try to name a module, and what the refusal says.
HOOKS = {
    "metric name": ('metrics: ["{m}:factory"]', "unknown metric"),
    "metric mapping": ('metrics: [{{name: "{m}:factory"}}]', "unknown metric"),
    "os.system metric": ('metrics: ["os:system"]', "unknown metric 'os:system'"),
    "parser name": ('metrics: [exact_match]\nparse: "{m}:factory"', "unknown parser"),
    "subprocess parser": (
        'metrics: [exact_match]\nparse: {{name: "subprocess:Popen", args: [touch, PWNED]}}',
        "unknown parser 'subprocess:Popen'",
    ),
    "process_docs key": ('metrics: [exact_match]\nprocess_docs: "{m}:factory"', "process_docs: unknown field"),
    "fad extractor": ('metrics: [{{name: fad, extractor: "module:{m}:factory"}}]', "is not trusted code"),
    "fad os.system": ('metrics: [{{name: fad, extractor: "module:os:system", command: "touch PWNED"}}]', "module 'os' is not trusted code"),
    "fid extractor": ('metrics: [{{name: fid, extractor: "module:subprocess:Popen"}}]', "module 'subprocess' is not trusted code"),
}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_a_task_cannot_make_mmeval_import_a_module(
    hook: str, sentinel: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, marker = sentinel
    monkeypatch.chdir(tmp_path)
    template, expected = HOOKS[hook]
    yaml_text = QA_YAML.replace("metrics: [exact_match]\n", template.format(m=module) + "\n")
    path = write_task(tmp_path / "t", QA_ROWS, yaml_text)
    result = cli("run", "--model", "test-hash", "--tasks", str(path), "--output", str(tmp_path / "res"))
    assert_user_error(result, expected)
    if expected.startswith("unknown"):
        assert "not by a module path" in " ".join(result.output.split())
    assert module not in sys.modules and not marker.exists()
    assert not (tmp_path / "PWNED").exists()


def test_hooks_load_only_from_trusted_code(sentinel: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    module, marker = sentinel
    from tests.fake_models import HashModel

    assert load_hook("tests.fake_models:HashModel", "hook") is HashModel  # this project's checkout
    for target, why in [
        (f"{module}:factory", "is not trusted code"),
        ("os:system", "module 'os' is not trusted code"),
        ("json:loads", "module 'json' is not trusted code"),
        ("pytest:main", "module 'pytest' is not trusted code"),  # installed in the checkout's .venv
        ("no_such_package_xyz:f", "no module named 'no_such_package_xyz'"),
        ("os", "expected <package.module>:<callable>"),
        ("os.path:join(1)", "expected <package.module>:<callable>"),
    ]:
        with pytest.raises(UntrustedHookError, match=re.escape(why)):
            load_hook(target, "extractor 'x'")
    assert module not in sys.modules and not marker.exists()
    # An installed plugin (a package registering mmeval.* entry points) is trusted.
    monkeypatch.setattr(metrics_base, "_plugin_packages", lambda: {module})
    assert load_hook(f"{module}:factory", "hook")(a=1) == {"a": 1}
    assert marker.read_text() == "imported"


# --------------------------------------------------------------------------- media paths

MEDIA_YAML = """\
task: media_conf
version: 1
dataset: {path: data.jsonl}
doc_id: id
prompt:
  - image: image
  - text: "{{ question }}"
target: answer
metrics: [exact_match]
"""


def media_task(tmp_path: Path, paths: dict[str, str]) -> Path:
    """A dataset in ``tmp_path/ds`` with img/ok.png inside and ``tmp_path/outside/secret.png``."""
    root, outside = tmp_path / "ds", tmp_path / "outside"
    (root / "img").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(root / "img" / "ok.png")
    Image.new("RGB", (8, 8), (0, 0, 200)).save(outside / "secret.png")
    rows = [{"id": doc_id, "image": image, "question": "What colour?", "answer": "red"} for doc_id, image in paths.items()]
    return write_task(root, rows, MEDIA_YAML)


def run_media(task: Path, out: Path) -> tuple[dict, dict[str, dict]]:
    run = evaluate("test-hash", [str(task)], output=out, run_id="media", use_cache=False)
    result = json.loads((run.path / "run.json").read_text())["results"]["media_conf"]
    rows = [json.loads(line) for line in (run.path / "samples" / "media_conf.jsonl").read_text().splitlines()]
    return result, {r["doc_id"]: r for r in rows}


def assert_refused(result: dict, rows: dict[str, dict], refused: dict[str, str], ok: list[str]) -> None:
    assert result["n"] == len(refused) + len(ok)
    assert result["n_errors"] == len(refused) and sum(result["errors"].values()) == len(refused)
    assert result["metrics"]["exact_match"]["n"] == len(ok)  # the rest of the run completed
    for doc_id, path in refused.items():
        error = rows[doc_id]["error"] or ""
        assert f"media path {path!r} is outside the dataset root" in error and "refused" in error, (doc_id, error)
        assert rows[doc_id]["response"] is None  # never sent to the model
    for doc_id in ok:
        assert rows[doc_id]["error"] is None and rows[doc_id]["response"], doc_id


def test_media_paths_outside_the_dataset_root_fail_only_their_sample(tmp_path: Path) -> None:
    outside = str(tmp_path / "outside" / "secret.png")
    refused = {
        "dotdot": "../../etc/passwd",
        "absolute": outside,
        "absolute_etc": "/etc/passwd",
        "inner_dotdot": "img/../../outside/secret.png",
    }
    task = media_task(tmp_path, {"ok": "img/ok.png", **refused, "ok_dotdot_inside": "img/../img/ok.png"})
    result, rows = run_media(task, tmp_path / "res")
    assert_refused(result, rows, refused, ["ok", "ok_dotdot_inside"])


def test_symlinks_on_disk_are_followed_but_traversal_through_them_is_not(tmp_path: Path) -> None:
    """The policy (mmeval.tasks.loading.confine): the dataset's *text* is confined; symlinks are
    the user's layout and are followed, as a hub snapshot (files linking into ../../blobs) and
    `mmeval data prepare` (a linked media folder) need. A `..` written in the data still cannot
    climb out through a link."""
    task = media_task(
        tmp_path,
        {"ok": "img/ok.png", "file_link": "img/link.png", "dir_link": "linked/secret.png", "climb": "linked/../../outside/secret.png"},
    )
    (tmp_path / "ds" / "img" / "link.png").symlink_to(tmp_path / "outside" / "secret.png")
    (tmp_path / "ds" / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    result, rows = run_media(task, tmp_path / "res")
    assert_refused(result, rows, {"climb": "linked/../../outside/secret.png"}, ["ok", "file_link", "dir_link"])


# --------------------------------------------------------------------------- API keys


def needles(key: str) -> list[bytes]:
    """The key as bytes, its random part, and its base64 forms at each alignment (the site
    stores samples base64-encoded)."""
    raw = key.encode()
    found = [raw, key.rsplit("-", 1)[-1].encode()]
    for offset in range(3):
        enc = base64.b64encode(b"\0" * offset + raw + b"\0\0")
        start, end = -(-offset // 3) * 4, (offset + len(raw)) // 3 * 4
        found.append(enc[start:end])
    return found


def test_needles_find_the_key_in_base64() -> None:
    key = f"sk-planted-{uuid.uuid4().hex}"
    for prefix in (b"", b"x", b"xy"):
        blob = base64.b64encode(prefix + b'{"response": "' + key.encode() + b'"}')
        assert any(n in blob for n in needles(key)[2:])


BOARD = "name: sec\ntitle: Security\nbenchmarks:\n  - {task: local_qa, metric: exact_match, label: QA, normalise: {scale: 100}}\n"


def test_the_api_key_reaches_no_file_log_console_or_site_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = f"sk-planted-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)  # the variable openai-chat reads by default
    questions = ["fine say:red", "echoed [[echokey]] say:red", "answer echoes [[okkey]] say:red", "unauthorised [[401]] say:red"]
    rows = [{"id": f"q{i}", "question": q, "answer": "red", "group": i} for i, q in enumerate(questions)]
    task = write_task(tmp_path / "qa", rows, QA_YAML)
    out, site = tmp_path / "results", tmp_path / "site"
    outputs: list[str] = []
    with FakeApiServer(stall_s=3.0) as server:
        margs = f"model=fake,base_url={server.url},timeout=2,max_retries=1,backoff=0.01,backoff_max=0.05"
        args = ["run", "--model", "openai-chat", "--model-args", margs, "--tasks", str(task), "--output", str(out), "--run-id", "api"]
        monkeypatch.setattr(sys, "argv", ["mmeval", *args])  # run.json records the command line
        result = runner.invoke(app, [*args, "--json"])
        outputs.append(result.output)
        assert result.exit_code == 0, result.output
        # The ways a user might pass the key by mistake: refused, before anything is written.
        host = server.url.split("//", 1)[1]
        for i, bad in enumerate(
            [f"api_key={key}", f"api_key_env={key}", f"base_url=http://user:{key}@{host}", f"base_url={server.url}?api_key={key}"]
        ):
            bad_args = ["run", "--model", "openai-chat", "--model-args", f"model=fake,{bad}", "--tasks", str(task), "--output", str(out)]
            monkeypatch.setattr(sys, "argv", ["mmeval", *bad_args, "--run-id", f"bad{i}"])
            refused = runner.invoke(app, [*bad_args, "--run-id", f"bad{i}"])
            outputs.append(refused.output)
            assert_user_error(refused)
            assert not (out / f"bad{i}").exists()
        assert sum(key in json.dumps(r.headers) for r in server.records) >= len(questions)  # the server did get it
        assert {"echokey", "okkey", "401", "ok"} <= {r.step for r in server.records}
    run = json.loads((out / "api" / "run.json").read_text())
    assert run["results"]["local_qa"]["n_errors"] == 2
    samples = (out / "api" / "samples" / "local_qa.jsonl").read_text()
    assert samples.count("[REDACTED]") >= 3  # the echoed key was there, and was scrubbed
    for command in (["show", str(out / "api")], ["leaderboard", "show", str(out), "--config", str(tmp_path / "board.yaml")]):
        (tmp_path / "board.yaml").write_text(BOARD)
        shown = runner.invoke(app, command)
        assert shown.exit_code == 0, shown.output
        outputs.append(shown.output)
    built = runner.invoke(app, ["leaderboard", "build", str(out), "--config", str(tmp_path / "board.yaml"), "--out", str(site)])
    outputs.append(built.output)
    assert built.exit_code == 0, built.output
    files = [p for root in (out, site) for p in root.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"run.json", "local_qa.jsonl", "index.html"} <= names and any(n.startswith("cache.sqlite") for n in names)
    assert any(p.suffix == ".js" and "samples" in p.name for p in files)  # the site's drill-down data
    for path in files:
        data = path.read_bytes()
        assert not any(n in data for n in needles(key)), path
    captured = capfd.readouterr()
    for text in [*outputs, captured.out, captured.err, *(r.getMessage() for r in caplog.records)]:
        assert not any(n.decode() in text for n in needles(key)[:2])
