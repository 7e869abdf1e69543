"""Ingest and render on Ray (``--ray local``, 2 CPUs) against the local path: the same
segments and the same bytes, a killed worker retried, no Ray process left afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import jiwer
import psutil
import pytest
import soundfile as sf

from core.catalog import Catalog
from core.cluster.session import ClusterOptions, ClusterSession, ray_session
from core.cluster.threads import pinned_threads
from core.dataset.ingest import IngestOptions, ingest
from core.demo.workspace import DEMO_SPEAKERS, SCRIPT_NAME, build_demo
from core.episodes.render import render_episode
from core.episodes.synthesis.draft import synthesize
from core.records import Recording
from core.workspace import Workspace
from tests.conftest import REPO

pytest.importorskip("ray")  # CI installs the cluster extra (.ci/run), so these run there

NO_ANALYSIS = IngestOptions(transcribe=False, speaker_filter=False)


RAY_TEMP = Path("/tmp/ray")  # nosec B108  # Ray's own session folders (its default)


def ray_sessions() -> set[str]:
    return {p.name for p in RAY_TEMP.glob("session_2*")}


def ray_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose command line names ``marker`` (a Ray session's name)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or ())
        if marker in line and proc.pid != os.getpid():
            found.append(proc)
    return found


def gone_within(marker: str, seconds: float = 15.0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := ray_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The demo, imported but not ingested (short recordings)."""
    return build_demo(tmp_path_factory.mktemp("cluster") / "base", seconds_per_recording=10,
                      ingest=False)  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSession]:
    """One private Ray instance with 2 CPUs for the module; gone with all its processes after."""
    with ray_session(ClusterOptions(cpus=2)) as opened:
        session_dir = opened.ray._private.worker._global_node.get_session_dir_path()
        assert ray_processes(Path(session_dir).name)  # its head, raylet and workers
        yield opened
    assert not opened.ray.is_initialized()
    assert gone_within(Path(session_dir).name) == []


def copy(ws: Workspace, dest: Path) -> Workspace:
    shutil.copytree(ws.root, dest)
    return Workspace.open(dest)


def segments_digest(ws: Workspace) -> list[tuple[object, ...]]:
    """Every stored segment (all but its timestamps) and its WAV's bytes."""
    with Catalog.open(ws.catalog_path) as catalog:
        segments = catalog.segments()
        recordings = [(r.id, r.state, r.duration_sec, r.error) for r in catalog.recordings()]
    return [tuple(recordings)] + [
        (s.id, s.recording_id, s.audio, s.start_sec, s.end_sec, s.duration_sec, s.text,
         s.qc, s.flags, s.status, hashlib.sha256((ws.root / s.audio).read_bytes()).hexdigest())
        for s in segments
    ]  # fmt: skip


def samples_digest(folder: Path) -> dict[str, str]:
    """Each WAV's samples (the render cache's float WAVs carry libsndfile's PEAK chunk,
    whose timestamp differs between any two writes)."""
    return {
        p.name: hashlib.sha256(sf.read(p, dtype="float32")[0].tobytes()).hexdigest()
        for p in sorted(folder.glob("*.wav"))
    }


class Killer(threading.Thread):
    """Kills (SIGKILL) the first worker seen running ``task`` (its process title), once."""

    def __init__(self, task: str) -> None:
        super().__init__(daemon=True)
        self.title = f"ray::{task}"
        self.killed: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and not self.killed:
            for proc in psutil.Process().children(recursive=True):
                try:
                    if self.title in " ".join(proc.cmdline()):
                        proc.send_signal(signal.SIGKILL)
                        self.killed.append(proc.pid)
                        break
                except psutil.Error:
                    continue
            time.sleep(0.005)


def test_ingest_on_ray_equals_local_and_survives_a_killed_worker(
    base: Workspace, cluster: ClusterSession, tmp_path: Path
) -> None:
    from core.cluster.ingest import ray_cutter

    here, there = copy(base, tmp_path / "here"), copy(base, tmp_path / "there")
    for sp in DEMO_SPEAKERS:
        ingest(here, [here.raw_dir / sp.name], sp.name, NO_ANALYSIS)
    killer = Killer("cut_task")
    killer.start()
    try:
        for sp in DEMO_SPEAKERS:
            summary = ingest(there, [there.raw_dir / sp.name], sp.name, NO_ANALYSIS,
                             cutter=ray_cutter(cluster))  # fmt: skip
            assert summary.failed == []
    finally:
        killer.done.set()
        killer.join()
    assert killer.killed, "no cut_task worker was caught running"
    assert segments_digest(there) == segments_digest(here)
    assert len(segments_digest(here)) > 4
    assert not any((there.root / ".tmp").glob("ingest-*"))  # the tasks' folders are gone


def test_transcription_and_the_speaker_filter_on_ray_equal_local_after_a_kill(
    base: Workspace, cluster: ClusterSession, tmp_path: Path
) -> None:
    """The analysis passes on Ray actors (the demo's tiny Whisper and tiny ECAPA): the same
    texts, similarities and flags as a local run with the same thread count, although the
    first actor seen running a batch is killed (restarted, its batch run again)."""
    from core.cluster.analysis import ray_analysers
    from core.cluster.ingest import ray_cutter

    here, there = copy(base, tmp_path / "here"), copy(base, tmp_path / "there")
    speaker = DEMO_SPEAKERS[0].name
    anchor = synthesize("A clip of the speaker to compare every segment with.")
    for ws in (here, there):  # the short demo recordings leave no clean anchor-length segment
        (ws.voices_dir / speaker / "anchors").mkdir(parents=True)
        sf.write(ws.voices_dir / speaker / "anchors" / "anchor-1.wav", anchor, 24000)
    with pinned_threads(cluster.options.threads):  # as every worker (and a Ray run's driver)
        ingest(here, [here.raw_dir / speaker], speaker)
    killer = Killer("AnalysisActor.batch")
    killer.start()
    try:
        summary = ingest(there, [there.raw_dir / speaker], speaker, cutter=ray_cutter(cluster),
                         analysers=ray_analysers(cluster))  # fmt: skip
    finally:
        killer.done.set()
        killer.join()
    assert summary.skipped_stages == [] and summary.transcribed > 0
    assert summary.speaker_checked > 0
    assert killer.killed, "no analysis actor was caught running a batch"
    # Everything but the ASR words is identical (similarities and flags included). The words
    # can differ where greedy decoding sits on a knife edge: CTranslate2's kernels round with
    # the input's memory layout (the same clip gives other words in another process, local or
    # not). The tiny random Whisper repeats "the" until a limit, so it is all knife edge;
    # bound: at most one segment in five differs, by at most one word in ten (SCALING.md).
    ours, theirs = segments_digest(there), segments_digest(here)
    text = 6  # the digest's text field
    assert [r[:text] + r[text + 1 :] for r in ours] == [r[:text] + r[text + 1 :] for r in theirs]
    differ = [(a[text], b[text]) for a, b in zip(ours[1:], theirs[1:], strict=True) if a != b]
    assert len(differ) <= max(1, len(ours[1:]) // 5)
    assert all(jiwer.wer(b, a) <= 0.1 for a, b in differ), differ
    with Catalog.open(there.catalog_path) as catalog:
        assert all(s.text_source and s.qc.similarity is not None for s in catalog.segments())


def test_an_interrupted_ray_ingest_resumes_like_a_local_run(
    base: Workspace, cluster: ClusterSession, tmp_path: Path
) -> None:
    """Ctrl-C after the first recording is stored: the re-run cuts the rest, and the
    workspace ends as a local run leaves it (ids included)."""
    from core.cluster.ingest import ray_cutter
    from core.dataset.ingest import Cutter

    here, there = copy(base, tmp_path / "here"), copy(base, tmp_path / "there")
    speaker = DEMO_SPEAKERS[0].name
    ingest(here, [here.raw_dir / speaker], speaker, NO_ANALYSIS)

    def stops_after_one(cutter: Cutter) -> Cutter:
        def cut(ws: Workspace, recs: Sequence[Recording]) -> Iterator[object]:
            yield next(iter(cutter(ws, recs)))  # the rest, still in flight, is cancelled
            raise KeyboardInterrupt

        return cut  # type: ignore[return-value]

    with pytest.raises(KeyboardInterrupt):
        ingest(there, [there.raw_dir / speaker], speaker, NO_ANALYSIS,
               cutter=stops_after_one(ray_cutter(cluster)))  # fmt: skip
    with Catalog.open(there.catalog_path) as catalog:
        states = [r.state for r in catalog.recordings(speaker=speaker)]
    assert states.count("segmented") == 1 < len(states)
    summary = ingest(there, [there.raw_dir / speaker], speaker, NO_ANALYSIS,
                     cutter=ray_cutter(cluster))  # fmt: skip
    assert [f.skipped for f in summary.files].count(True) == 1
    assert segments_digest(there) == segments_digest(here)


def test_render_on_ray_equals_local_after_an_actor_is_killed(
    base: Workspace, cluster: ClusterSession, tmp_path: Path
) -> None:
    from core.cluster.render import cluster_backend

    here, there = copy(base, tmp_path / "here"), copy(base, tmp_path / "there")
    script = f"scripts/{SCRIPT_NAME}.md"
    with pinned_threads(cluster.options.threads):  # as every worker (and a Ray run's driver)
        local = render_episode(here, script, backend="draft", retakes=0)
    with cluster_backend(there, "draft", cluster) as engine:
        assert len(engine.actors) == 2
        os.kill(engine.pids()[0], signal.SIGKILL)  # restarted; its batches run again
        remote = render_episode(there, script, backend=engine, retakes=0)
    assert remote.rendered_lines == local.rendered_lines
    folder = f"episodes/{SCRIPT_NAME}"
    assert samples_digest(there.root / folder / "cache") == samples_digest(
        here.root / folder / "cache"
    )
    assert remote.exported.wav.read_bytes() == local.exported.wav.read_bytes()


def test_cli_ray_local_end_to_end(base: Workspace, tmp_path: Path) -> None:
    """`podforge ingest/render --ray local` in a child process: the local results, and no
    Ray process of its own left when it exits."""
    here, there = copy(base, tmp_path / "here"), copy(base, tmp_path / "there")
    speaker = DEMO_SPEAKERS[0].name
    script = f"scripts/{SCRIPT_NAME}.md"
    ray_flags = ["--ray", "local", "--ray-cpus", "2"]

    pids: list[int] = []

    def podforge(*args: str) -> None:
        with subprocess.Popen(
            [sys.executable, "-m", "tui.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        ) as child:  # fmt: skip
            pids.append(child.pid)
            _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]

    with pinned_threads(1):  # the local reference, with the thread count `--ray` pins
        ingest(here, [here.raw_dir / speaker], speaker, NO_ANALYSIS)
        render_episode(here, script, backend="draft", retakes=0)
    podforge("ingest", str(there.root), str(there.raw_dir / speaker), "--speaker", speaker,
             "--no-asr", "--no-speaker-filter", *ray_flags)  # fmt: skip
    podforge("render", str(there.root), script, "--draft", "--retakes", "0", *ray_flags)
    with Catalog.open(there.catalog_path) as catalog:
        assert catalog.segments(speaker=speaker)
    assert segments_digest(there) == segments_digest(here)
    wav = f"episodes/{SCRIPT_NAME}/{SCRIPT_NAME}.wav"
    assert (there.root / wav).read_bytes() == (here.root / wav).read_bytes()
    # Ray names a session folder after the process that started it.
    started = {name for name in ray_sessions() for pid in pids if name.endswith(f"_{pid}")}
    assert len(started) == 2  # one private instance for the ingest, one for the render
    assert [p for name in started for p in gone_within(name)] == []
