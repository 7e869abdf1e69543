"""Ray's overhead against the local path, on this machine: ingest and render of the demo.

Builds the demo (imported, not ingested) in a temporary folder, then ingests both speakers
and renders the demo episode with the draft voice, once here and once on a private Ray
instance (``--ray local``: start-up, workers and the object store included), and prints
each path's seconds and the ratio Ray / local. The results are checked equal (segments and
bytes), as tests/test_cluster.py does.

    uv run python bench/cluster.py [--seconds 30] [--cpus 2]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from core.catalog import Catalog
from core.cluster.ingest import ray_cutter
from core.cluster.render import cluster_backend
from core.cluster.session import ClusterOptions, ray_session
from core.cluster.threads import pinned_threads
from core.dataset.ingest import IngestOptions, ingest
from core.demo.workspace import DEMO_SPEAKERS, SCRIPT_NAME, build_demo
from core.episodes.render import render_episode
from core.workspace import Workspace

NO_ANALYSIS = IngestOptions(transcribe=False, speaker_filter=False)


def digest(ws: Workspace) -> list[tuple[object, ...]]:
    with Catalog.open(ws.catalog_path) as catalog:
        segments = catalog.segments()
    return [
        (s.audio, s.start_sec, s.end_sec, s.qc, s.flags,
         hashlib.sha256((ws.root / s.audio).read_bytes()).hexdigest())
        for s in segments
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each recording")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray instance")
    args = parser.parse_args()
    script = f"scripts/{SCRIPT_NAME}.md"
    with tempfile.TemporaryDirectory(prefix="podforge-bench-cluster-") as tmp:
        base = build_demo(Path(tmp) / "base", seconds_per_recording=args.seconds, ingest=False)
        here = Workspace.open(shutil.copytree(base.root, Path(tmp) / "here"))
        there = Workspace.open(shutil.copytree(base.root, Path(tmp) / "there"))

        started = time.perf_counter()
        with pinned_threads(1):
            for sp in DEMO_SPEAKERS:
                ingest(here, [here.raw_dir / sp.name], sp.name, NO_ANALYSIS)
            local_ingest = time.perf_counter() - started
            render_episode(here, script, backend="draft", retakes=0)
        local = time.perf_counter() - started

        started = time.perf_counter()
        with ray_session(ClusterOptions(cpus=args.cpus)) as session:
            up = time.perf_counter() - started
            for sp in DEMO_SPEAKERS:
                ingest(there, [there.raw_dir / sp.name], sp.name, NO_ANALYSIS,
                       cutter=ray_cutter(session))  # fmt: skip
            ray_ingest = time.perf_counter() - started
            with cluster_backend(there, "draft", session) as engine:
                render_episode(there, script, backend=engine, retakes=0)
        on_ray = time.perf_counter() - started

        same = digest(here) == digest(there)
        wav = f"episodes/{SCRIPT_NAME}/{SCRIPT_NAME}.wav"
        same = same and (here.root / wav).read_bytes() == (there.root / wav).read_bytes()
    count = sum(len(sp.recordings) for sp in DEMO_SPEAKERS)
    print(f"recordings {count} x {args.seconds:.0f} s, Ray CPUs {args.cpus}")
    print(f"local   ingest {local_ingest:6.1f} s  total {local:6.1f} s")
    print(f"ray     ingest {ray_ingest:6.1f} s  total {on_ray:6.1f} s  (start-up {up:.1f} s)")
    print(f"ratio   ray / local {on_ray / local:.1f}x  (without start-up "
          f"{(on_ray - up) / local:.1f}x); results equal: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
