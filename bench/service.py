"""Load on the inference service: N concurrent synthesis requests, all answered, none lost.

Builds a fresh workspace (one consented speaker with a tiny CSM voice, made the way a voice
export makes one, in a temporary cache), serves it with a real uvicorn on 127.0.0.1 in this
process, then sends ``--requests`` synthesis requests at once from as many client threads,
first with the draft voice, then with the trained (tiny CSM) voice. Prints per backend:
answered/lost, p50 and p95 latency, throughput, how the queue batched the lines, and the
throughput of the same requests sent one at a time (measured first, in the same run).

    uv run python bench/service.py [--requests 50] [--backend draft csm]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


BASELINE = 8
"""Requests sent one after another first, for the throughput without batching."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--backend", nargs="+", default=["draft", "csm"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="podforge-service-bench-"))
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")

    import httpx2 as httpx
    import uvicorn

    from core.service.app import create_app
    from core.service.limits import Limits
    from core.service.server import bind
    from core.service.service import Service
    from core.settings import new_consent
    from core.workspace import Workspace
    from tests.conftest import make_tiny_voice

    ws = Workspace.create(root / "show", name="bench")
    consent = new_consent("Alice", "bench consent", granted_at=datetime(2026, 1, 1, tzinfo=UTC))
    ws.add_speaker("alice", consent)
    ws.settings.models.tts = "tiny"
    ws.save()
    if "csm" in args.backend:
        make_tiny_voice(ws, "alice", seed=1)
    token = "b" * 43
    service = Service(ws, token, Limits(queue_requests=max(64, args.requests)))
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    print(
        f"{args.requests} concurrent requests, {os.cpu_count()} CPUs, "
        f"models.device {ws.settings.models.device}"
    )
    with httpx.Client(
        base_url=url, timeout=600, limits=httpx.Limits(max_connections=200)
    ) as client:
        for backend in args.backend:
            body = {"voice": "alice", "backend": backend, "text": "Hello there, and welcome back."}
            # One request first: the model loads once, outside the measurement.
            assert client.post("/v1/speech", json=body, headers=auth).status_code == 200

            def ask(n: int, body: dict[str, str] = body) -> tuple[int, float]:
                started = time.perf_counter()
                response = client.post("/v1/speech", json={**body, "seed": n}, headers=auth)
                return response.status_code, time.perf_counter() - started

            # The baseline, in the same run: requests one at a time (no batching possible).
            alone = [ask(1000 + n)[1] for n in range(BASELINE)]
            before = client.get("/health").json()["queues"][backend]

            started = time.perf_counter()
            with ThreadPoolExecutor(args.requests) as pool:
                results = list(pool.map(ask, range(args.requests)))
            wall = time.perf_counter() - started
            after = client.get("/health").json()["queues"][backend]
            latencies = [seconds for status, seconds in results if status == 200]
            batches = after["batches"] - before["batches"]
            lines = after["lines"] - before["lines"]
            print(
                f"{backend:5}  answered {len(latencies)}/{args.requests}, lost "
                f"{args.requests - len(results)}, p50 {statistics.median(latencies):.2f} s, "
                f"p95 {percentile(latencies, 0.95):.2f} s, {len(latencies) / wall:.1f} requests/s "
                f"({wall:.1f} s), {lines} lines in {batches} batches "
                f"(largest {after['largest_batch']}); one at a time {BASELINE / sum(alone):.1f} "
                f"requests/s, so {len(latencies) / wall * sum(alone) / BASELINE:.1f}x"
            )
    server.should_exit = True
    thread.join(30)


if __name__ == "__main__":
    main()
