"""The inference service in-process (``core.service``): token, refusals, draft and tiny-CSM
synthesis batched through the queue, render jobs with their event stream, the episode lock.

A real uvicorn in a child process is in ``test_service_server.py``.
"""

from __future__ import annotations

import io
import json
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from starlette.testclient import TestClient

from core.episodes.lock import EpisodeLock
from core.episodes.pronunciations import load_pronunciations, spoken_line
from core.episodes.script import Line, Span
from core.episodes.synthesis.backends import make_backend
from core.errors import EpisodeBusyError, ServiceError
from core.service.app import create_app
from core.service.auth import check_bind, service_token
from core.service.limits import Limits
from core.service.service import Service
from core.workspace import Workspace
from tests.conftest import make_tiny_voice

TOKEN = "t" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCRIPT = '+++\ntitle = "Hi"\n[speakers]\nA = "alice"\n+++\n# One\nA: Hello there.\nA: Bye now.\n'


def serving(ws: Workspace, limits: Limits | None = None) -> tuple[TestClient, Service]:
    service = Service(ws, TOKEN, limits or Limits())
    return TestClient(create_app(service)), service


@pytest.fixture
def client(workspace: Workspace) -> Iterator[TestClient]:
    (workspace.scripts_dir / "hi.md").write_text(SCRIPT)
    test_client, _ = serving(workspace)
    with test_client:
        yield test_client


def one_line_error(response: Any, status: int) -> str:
    """The response's error line, checked: the status, JSON, one line, no traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "type"}, body
    assert "\n" not in body["error"] and "Traceback" not in response.text
    return str(body["error"])


# -- the token and where the service may listen ------------------------------------------


def test_the_token_is_made_once_private_and_refused_when_others_can_read_it(
    workspace: Workspace,
) -> None:
    first = service_token(workspace.root)
    assert first.created and len(first.value) >= 40
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.path.parent.stat().st_mode) == 0o700
    again = service_token(workspace.root)
    assert not again.created and again.value == first.value
    first.path.chmod(0o644)
    with pytest.raises(ServiceError, match=r"readable by other users.*chmod 600"):
        service_token(workspace.root)


def test_no_auth_is_refused_off_loopback(workspace: Workspace) -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(host, no_auth=True)
    check_bind("0.0.0.0", no_auth=False)  # nosec B104  # the token is required there
    from tui.cli import main

    out = CliRunner().invoke(main, ["serve", str(workspace.root), "--host", "0.0.0.0", "--no-auth"])
    assert out.exit_code == 1
    assert out.output.startswith("podforge: error: --no-auth is allowed only on a loopback")
    assert out.output.count("\n") == 1 and not (workspace.root / ".service").exists()


def test_every_call_but_health_and_the_api_page_needs_the_token(client: TestClient) -> None:
    calls = [
        ("GET", "/v1/voices"), ("GET", "/v1/scripts"), ("GET", "/v1/episodes"),
        ("GET", "/v1/episodes/hi"), ("GET", "/v1/episodes/hi/files/hi.wav"),
        ("POST", "/v1/speech"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x"),
        ("DELETE", "/v1/jobs/x"), ("GET", "/v1/jobs/x/events"),
    ]  # fmt: skip
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = client.request(method, path, headers=headers, json={})
            one_line_error(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/health").json()["status"] == "ok"
    api = client.get("/openapi.json").json()
    assert {"/v1/speech", "/v1/jobs", "/v1/jobs/{job_id}/events", "/health"} <= set(api["paths"])
    assert "HTTPBearer" in api["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


# -- synthesis -------------------------------------------------------------------------------


def draft_audio(ws: Workspace, voice: str, text: str) -> np.ndarray:  # type: ignore[type-arg]
    """``text`` in ``voice``'s draft voice, said as a script line is (numbers as words)."""
    line = spoken_line(Line(0, "A", voice, (Span(text),), 1, 0), load_pronunciations(ws.root))
    return make_backend(ws, "draft").render(line, 0).audio


def test_draft_speech_as_wav_and_mp3(client: TestClient, workspace: Workspace) -> None:
    body = {"voice": "alice", "text": "Hello from the service.", "backend": "draft"}
    wav = client.post("/v1/speech", json=body, headers=AUTH)
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    expected = draft_audio(workspace, "alice", "Hello from the service.")
    assert rate == 24000 and len(audio) == len(expected)
    assert np.abs(audio - expected).max() < 2 / 32768  # the same voice, as 16-bit PCM
    from core.watermark.perth import load_mark

    assert load_mark().score(audio, rate) >= 0.99  # watermarked, as in the CLI
    assert float(wav.headers["x-podforge-seconds"]) == pytest.approx(len(audio) / rate, abs=1e-3)
    mp3 = client.post("/v1/speech", json={**body, "format": "mp3"}, headers=AUTH)
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
    decoded, mp3_rate = sf.read(io.BytesIO(mp3.content))
    assert mp3_rate == 24000 and abs(len(decoded) - len(audio)) < 0.1 * mp3_rate


def test_concurrent_draft_requests_are_all_answered_each_with_its_own_audio(
    client: TestClient, workspace: Workspace
) -> None:
    texts = [f"Request number {n}." + " More words." * (n % 4) for n in range(16)]

    def ask(text: str) -> bytes:
        body = {"voice": "alice", "text": text, "backend": "draft"}
        response = client.post("/v1/speech", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, texts))
    for text, answer in zip(texts, answers, strict=True):  # none lost, none swapped
        audio, _ = sf.read(io.BytesIO(answer), dtype="float32")
        assert len(audio) == len(draft_audio(workspace, "alice", text))
    health = client.get("/health").json()
    assert health["queues"]["draft"]["lines"] == 16 and health["queues"]["draft"]["waiting"] == 0


def test_refusals_are_the_one_line_errors_with_their_status(
    client: TestClient, workspace: Workspace
) -> None:
    speech = {"voice": "alice", "text": "Hi.", "backend": "draft"}
    post = client.post
    assert "unknown speaker 'bob'" in one_line_error(
        post("/v1/speech", json={**speech, "voice": "bob"}, headers=AUTH), 404
    )
    assert "text: Field required" in one_line_error(
        post("/v1/speech", json={"voice": "alice"}, headers=AUTH), 422
    )
    assert "over the limit of 1000" in one_line_error(
        post("/v1/speech", json={**speech, "text": "word " * 400}, headers=AUTH), 422
    )
    assert "over 16384 bytes" in one_line_error(
        post("/v1/speech", json={**speech, "text": "x" * 20000}, headers=AUTH), 413
    )
    # csm: alice consented but has no trained voice; carol never consented.
    assert "has no trained voice" in one_line_error(
        post("/v1/speech", json={**speech, "backend": "csm"}, headers=AUTH), 422
    )
    assert "has no consent record" in one_line_error(
        post("/v1/speech", json={**speech, "voice": "carol", "backend": "csm"}, headers=AUTH), 403
    )
    outside = workspace.root.parent / "outside.md"
    outside.write_text(SCRIPT)
    (workspace.scripts_dir / "link.md").symlink_to(outside)
    for script in ("../outside.md", str(outside), "scripts/link.md"):
        assert "outside the workspace" in one_line_error(
            post("/v1/jobs", json={"script": script}, headers=AUTH), 400
        )
    assert "not an episode script" in one_line_error(
        post("/v1/jobs", json={"script": "workspace.toml"}, headers=AUTH), 400
    )
    assert "no such script" in one_line_error(
        post("/v1/jobs", json={"script": "scripts/none.md"}, headers=AUTH), 404
    )
    one_line_error(client.get("/v1/jobs/nope", headers=AUTH), 404)
    one_line_error(client.get("/v1/episodes/nope", headers=AUTH), 404)
    one_line_error(client.get("/v1/episodes/..", headers=AUTH), 404)
    assert not outside.with_suffix("").exists()


def test_a_full_queue_answers_429_with_retry_after(workspace: Workspace) -> None:
    test_client, service = serving(workspace, Limits(queue_requests=1))
    release = threading.Event()
    with test_client:
        queue = service.queues["draft"]
        blocked = queue.call(lambda backend: release.wait(30))  # the worker is busy
        try:
            for _ in range(500):
                if queue.depth == 0:  # the worker took the blocking call
                    break
                time.sleep(0.01)
            line = Line(0, "A", "alice", (Span("Waiting."),), 1, 0)
            waiting = queue.submit([(line, 0)])  # fills the one place
            body = {"voice": "alice", "text": "Hi.", "backend": "draft"}
            response = test_client.post("/v1/speech", json=body, headers=AUTH)
            assert "queue is full" in one_line_error(response, 429)
            assert int(response.headers["retry-after"]) >= 1
        finally:
            release.set()
        assert blocked.result(30) and len(waiting.result(30)) == 1  # nothing lost


# -- render jobs and the episode lock -------------------------------------------------------


def events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=AUTH) as stream:
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((kind, json.loads(line.removeprefix("data: "))))
    return out


def test_a_render_job_streams_its_progress_and_serves_its_files(
    client: TestClient, workspace: Workspace
) -> None:
    accepted = client.post("/v1/jobs", json={"script": "hi.md", "backend": "draft"}, headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert accepted.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["script"] == "scripts/hi.md" and job["episode"] == "hi"
    seen = events(client, job["id"])
    assert seen[-1][0] == "done" and all(kind == "progress" for kind, _ in seen[:-1])
    # the stream sends the job's current state: a client that connects late sees fewer
    # progress events, never a stale one after a newer (versions only grow)
    versions = [data["version"] for _, data in seen if "version" in data]
    assert versions == sorted(versions)
    done = seen[-1][1]
    assert {"hi.wav", "hi.mp3", "manifest.json", "chapters.json"} <= set(done["files"])
    folder = workspace.episodes_dir / "hi"
    assert json.loads((folder / "manifest.json").read_text())["watermark"]["applied"] is True
    mp3 = client.get("/v1/episodes/hi/files/hi.mp3", headers=AUTH)
    assert mp3.status_code == 200 and mp3.content == (folder / "hi.mp3").read_bytes()
    manifest = client.get("/v1/episodes/hi/files/manifest.json", headers=AUTH).json()
    assert manifest["backend"] == "draft" and len(manifest["lines"]) == 2
    listing = client.get("/v1/episodes", headers=AUTH).json()
    assert listing == [{"name": "hi", "files": done["files"], "complete": True}]
    (folder / "cache").mkdir(exist_ok=True)
    for name in ("cache", "../workspace.toml", ".render.lock"):
        one_line_error(client.get(f"/v1/episodes/hi/files/{name}", headers=AUTH), 404)
    assert not (folder / ".render.lock").exists()  # released and removed with the job


def test_a_job_and_any_other_render_of_its_episode_exclude_each_other(
    client: TestClient, workspace: Workspace
) -> None:
    from tui.cli import main

    draft = {"script": "scripts/hi.md", "backend": "draft"}
    with EpisodeLock(workspace, "scripts/hi.md"):  # as the app or `podforge render` holds it
        refused = client.post("/v1/jobs", json=draft, headers=AUTH)
        assert "is being rendered by process" in one_line_error(refused, 409)
    job = client.post("/v1/jobs", json=draft, headers=AUTH).json()
    with pytest.raises(EpisodeBusyError):  # the job holds it from acceptance to its end
        EpisodeLock(workspace, "hi.md").acquire()
    out = CliRunner().invoke(main, ["render", str(workspace.root), "scripts/hi.md", "--draft"])
    assert out.exit_code == 1 and "podforge: error: episode 'hi' is being rendered" in out.output
    again = client.post("/v1/jobs", json=draft, headers=AUTH)
    one_line_error(again, 409)
    assert events(client, job["id"])[-1][0] == "done"
    out = CliRunner().invoke(main, ["render", str(workspace.root), "scripts/hi.md", "--draft"])
    assert out.exit_code == 0, out.output


def test_a_cancelled_job_writes_no_episode(client: TestClient, workspace: Workspace) -> None:
    accepted = client.post("/v1/jobs", json={"script": "hi.md", "backend": "draft"}, headers=AUTH)
    job_id = accepted.json()["id"]
    cancelled = client.delete(f"/v1/jobs/{job_id}", headers=AUTH)
    assert cancelled.status_code == 202
    last = events(client, job_id)[-1]
    if last[0] == "cancelled":  # stopped before its end (it may finish first on a fast machine)
        assert not (workspace.episodes_dir / "hi" / "manifest.json").exists()
    else:
        assert last[0] == "done"


# -- the trained voice (tiny CSM) -------------------------------------------------------------


@pytest.mark.slow  # builds and loads the tiny CSM, two batched generations
def test_trained_voice_requests_are_batched_and_pass_the_consent_gate(
    workspace: Workspace, cache_home: Path
) -> None:
    workspace.settings.models.tts = "tiny"
    workspace.save()
    make_tiny_voice(workspace, "alice", seed=4)  # consented
    make_tiny_voice(workspace, "carol", seed=5)  # trained, but carol never consented
    test_client, service = serving(workspace)
    with test_client:
        alone = test_client.post(
            "/v1/speech", json={"voice": "alice", "text": "Hello there.", "seed": 3}, headers=AUTH
        )
        assert alone.status_code == 200, alone.text
        assert test_client.get("/health").json()["model"]["loaded"] is True

        def ask(seed: int) -> bytes:
            body = {"voice": "alice", "text": "Hello there.", "seed": seed}
            response = test_client.post("/v1/speech", json=body, headers=AUTH)
            assert response.status_code == 200, response.text
            return response.content

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(ask, [3, 4, 5, 6, 7, 8]))
        stats = service.queues["csm"].stats
        assert stats.lines == 7 and stats.largest_batch > 1  # requests went together
        assert answers[0] == alone.content  # a line sounds the same alone or in a batch
        assert len(set(answers)) == 6  # each request its own seed
        refused = test_client.post(
            "/v1/speech", json={"voice": "carol", "text": "Hi."}, headers=AUTH
        )
        assert "has no consent record" in one_line_error(refused, 403)
        voices = {v["name"]: v for v in test_client.get("/v1/voices", headers=AUTH).json()}
        assert voices["alice"]["backends"] == ["csm", "draft"]
        assert "no consent record" in voices["carol"]["csm_refused"]
        # A render job's lines go through the same queue: the model loaded once is shared.
        (workspace.scripts_dir / "hi.md").write_text(SCRIPT)
        job = test_client.post("/v1/jobs", json={"script": "hi.md"}, headers=AUTH).json()
        assert events(test_client, job["id"])[-1][0] == "done"
        assert stats.lines == 9
        manifest = json.loads((workspace.episodes_dir / "hi" / "manifest.json").read_text())
        assert manifest["backend"] == "csm"
        # Consent withdrawn on disk (the app, another command) applies to the next request.
        edited = Workspace.open(workspace.root)
        edited.settings.speakers["alice"].consent = None
        edited.save()
        withdrawn = test_client.post(
            "/v1/speech", json={"voice": "alice", "text": "Hello there."}, headers=AUTH
        )
        assert "has no consent record" in one_line_error(withdrawn, 403)
