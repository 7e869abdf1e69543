"""``podforge serve`` as a user starts it: a real uvicorn on 127.0.0.1 in a child process,
driven over HTTP (a bounded number of requests, every wait with a time limit)."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
import soundfile as sf

from core.workspace import Workspace
from tests.conftest import REPO

PODFORGE = str(Path(sys.executable).with_name("podforge"))
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def start(workspace: Workspace, *args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """A ``podforge serve`` on a free port; its base URL and what it printed before it."""
    proc = subprocess.Popen(
        [PODFORGE, "serve", str(workspace.root), "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        printed.append(line.rstrip("\n"))
        found = LISTENING.search(line)
        if found:
            return proc, found.group(1), printed
    proc.kill()
    raise AssertionError(f"podforge serve did not start: {printed}")


@pytest.fixture
def server(workspace: Workspace) -> Iterator[tuple[str, str, list[str]]]:
    (workspace.scripts_dir / "hi.md").write_text(
        '+++\ntitle = "Hi"\n[speakers]\nA = "alice"\n+++\nA: Hello there.\n'
    )
    proc, url, printed = start(workspace)
    token = (workspace.root / ".service" / "token").read_text().strip()
    try:
        yield url, token, printed
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=30) == 0  # a clean shutdown
        finally:
            proc.kill()


def test_podforge_serve_answers_a_scripts_calls(
    server: tuple[str, str, list[str]], workspace: Workspace
) -> None:
    url, token, printed = server
    assert printed[1].strip() == token  # printed once, on creation
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/health").json()["auth"] is True
        assert client.get("/v1/voices").status_code == 401
        body = {"voice": "alice", "text": "Hello over HTTP.", "backend": "draft"}

        def ask(n: int) -> int:
            response = client.post("/v1/speech", json={**body, "seed": n}, headers=auth)
            audio, rate = sf.read(io.BytesIO(response.content))
            assert rate == 24000 and len(audio) > rate // 2
            return response.status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(ask, range(12))) == [200] * 12  # all answered
        big = client.post("/v1/speech", json={**body, "text": "x" * 20000}, headers=auth)
        assert big.status_code == 413 and "over 16384 bytes" in big.json()["error"]
        job = client.post("/v1/jobs", json={"script": "hi.md", "backend": "draft"}, headers=auth)
        assert job.status_code == 202
        kinds = []
        with client.stream("GET", f"/v1/jobs/{job.json()['id']}/events", headers=auth) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            for line in events.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line.removeprefix("event: "))
                elif line.startswith("data: "):
                    last = json.loads(line.removeprefix("data: "))
        assert kinds[-1] == "done" and "hi.mp3" in last["files"]
        mp3 = client.get("/v1/episodes/hi/files/hi.mp3", headers=auth)
        assert mp3.content == (workspace.episodes_dir / "hi" / "hi.mp3").read_bytes()
        health = client.get("/health").json()
        assert health["queues"]["draft"]["lines"] >= 13 and health["jobs"]["running"] == 0


def test_a_taken_port_and_a_second_start(
    server: tuple[str, str, list[str]], workspace: Workspace
) -> None:
    url, token, _ = server
    port = url.rsplit(":", 1)[1]
    taken = subprocess.run(
        [PODFORGE, "serve", str(workspace.root), "--port", port],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert taken.returncode == 1
    assert taken.stderr.startswith(f"podforge: error: cannot listen on 127.0.0.1:{port}")
    assert token not in taken.stdout  # later starts say where it is, never the token
    assert f"service token: in {workspace.root / '.service' / 'token'}" in taken.stdout
