"""Render memory: peak RSS of a fully cached re-render of a long two-speaker episode.

Builds a workspace in a temp folder whose render cache already holds every line of a
``--minutes`` long (default 418) two-speaker script: a few synthetic speech-like clips
(harmonic tones under a syllable envelope and noise) are written once and hard-linked
into ``episodes/<name>/cache/`` under each line's real cache key (``line_key`` of the
draft backend), so the real ``core.episodes.render.render_episode`` finds every line
in the cache and synthesises nothing, exactly what a user's re-render does. Variants:

* ``stereo48``: a looped music bed, ``[mix] stereo = true`` -> 48 kHz stereo (the worst);
* ``bed48``: the same bed, mono -> 48 kHz mono;
* ``speech24``: speech only -> 24 kHz mono.

Each render runs in a child process; its peak RSS is the kernel's ``ru_maxrss`` for that
child (``os.wait4``). The baseline, measured in the same run, is the old in-memory path
(``mix_episode`` + ``export_episode`` on every line read into memory, as ``render_episode``
did before it streamed) on shorter episodes of the first variant asked for; its peak is
fitted linearly over the baseline lengths and extrapolated to ``--minutes``. Target:
peak RSS < 2 GB for any length. The load average is printed first (other work slows the
wall times, not the memory).

    uv run python bench/render_memory.py [--minutes 418] [--variants stereo48,bed48,speech24]
        [--baseline-minutes 5,15] [--keep DIR]

Disk: the streamed render writes a float32 intermediate in ``<workspace>/.tmp/`` (418 min
at 48 kHz stereo: 9.6 GB) next to the WAV (4.8 GB); each variant's outputs are removed
before the next.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 24000
CLIPS = 12  # distinct clips per speaker
TARGET_MB = 2048
VARIANTS = ("stereo48", "bed48", "speech24")
SPEAKERS = {"HOST": "alice", "GUEST": "bob"}


# --------------------------------------------------------------------------- building


def clip(speaker: int, k: int) -> np.ndarray:
    """A speech-like clip of 3-9 s: harmonics of a gliding f0 under a syllable envelope."""
    rng = np.random.default_rng(1000 * speaker + k)
    seconds = 3.0 + 6.0 * rng.random()
    t = np.arange(int(seconds * SR)) / SR
    f0 = (115.0, 195.0)[speaker] * (1.0 + 0.08 * np.sin(2 * np.pi * 0.7 * t + k))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(h * phase) / h for h in range(1, 9))
    syllables = np.clip(np.sin(2 * np.pi * (3.5 + rng.random()) * t), 0.0, None) ** 0.6
    noise = rng.standard_normal(t.size) * 0.05
    audio = 0.25 * syllables * voiced + noise * syllables
    return audio.astype(np.float32)


def script_text(variant: str, minutes: float, lengths: list[list[float]]) -> tuple[str, int]:
    """The script of ``variant`` lasting about ``minutes``; also its number of lines."""
    head = ["+++", f'title = "Long {variant}"', "[speakers]"]
    head += [f'{name} = "{voice}"' for name, voice in SPEAKERS.items()]
    if variant == "stereo48":
        head += ["[mix]", "stereo = true"]
    body = ["+++", "", "# Cold open"]
    if variant != "speech24":
        body.append("[music theme.wav fade_in=2s fade_out=3s duck=-14dB volume=-6dB]")
    rng = np.random.default_rng(5)
    total, index = 0.0, 0
    while total < minutes * 60:
        if index and index % 60 == 0:
            body += ["", f"# Part {index // 60 + 1}", "[pause 1.5s]"]
            total += 1.5
        who = index % 2
        k = int(rng.integers(CLIPS))
        name = list(SPEAKERS)[who]
        body.append(f"{name}: Line {index} of the long episode, clip {k}.")
        total += lengths[who][k] + 0.25
        index += 1
    return "\n".join(head + body) + "\n", index


def build(root: Path, variants: list[str], minutes: dict[str, float]) -> dict[str, Path]:
    """A workspace under ``root`` with one fully cached script per ``(variant, minutes)``."""
    from core.demo.workspace import music_bed
    from core.episodes.render import line_key, line_seed
    from core.episodes.script import Line, load_script
    from core.episodes.synthesis.backends import make_backend
    from core.episodes.synthesis.cache import RenderCache
    from core.workspace import Workspace

    ws = Workspace.create(root / "ws", name="bench")
    for voice in SPEAKERS.values():
        ws.add_speaker(voice, None)
    import soundfile as sf

    sf.write(str(ws.assets_dir / "theme.wav"), music_bed(44100, 16.0, np.random.default_rng(1)),
             44100)  # fmt: skip
    clips = RenderCache(root / "clips")
    lengths: list[list[float]] = [[], []]
    for who in range(2):
        for k in range(CLIPS):
            from core.episodes.synthesis.backends import Rendered

            audio = clip(who, k)
            clips.put(f"{who}-{k}", Rendered(audio=audio, sample_rate=SR))
            lengths[who].append(audio.size / SR)
    engine = make_backend(ws, "draft")
    settings = {"sample_rate": ws.settings.audio.sample_rate}
    scripts: dict[str, Path] = {}
    for label, variant in ((label, label.split("@")[0]) for label in variants):
        text, _ = script_text(variant, minutes[label], lengths)
        name = label.replace("@", "-")
        path = ws.scripts_dir / f"{name}.md"
        path.write_text(text)
        cache = RenderCache(ws.episodes_dir / name / "cache")
        cache.folder.mkdir(parents=True, exist_ok=True)
        for line in load_script(path, ws).lines:
            assert isinstance(line, Line)
            who = list(SPEAKERS).index(line.speaker)
            k = int(line.text.rsplit("clip ", 1)[1].rstrip("."))
            key = line_key(engine, line, line_seed(0, line), settings)
            os.link(clips.path(f"{who}-{k}"), cache.path(key))
        scripts[label] = path
    return scripts


# ------------------------------------------------------------------------ the children


def child_streamed(ws_root: Path, script: Path) -> dict[str, object]:
    """The real render (draft backend, every line cached), as ``podforge render`` runs it."""
    from core.episodes.render import render_episode
    from core.workspace import Workspace

    ws = Workspace.open(ws_root)
    t0 = time.perf_counter()
    seen: list[str] = []

    def progress(done: int, total: int, what: str) -> None:
        stage = what.split(" (")[0] if not what[:1].isupper() else "lines"
        if stage not in seen:
            seen.append(stage)
            print(f"    [{time.perf_counter() - t0:6.1f} s] {stage}", file=sys.stderr, flush=True)

    result = render_episode(ws, script, backend="draft", progress=progress)
    wav = result.exported.wav
    import soundfile as sf

    info = sf.info(str(wav))
    return {
        "seconds": result.seconds,
        "minutes": result.duration_sec / 60,
        "lines": len(result.episode.lines),
        "rendered": len(result.rendered_lines),
        "cached": len(result.cached_lines),
        "lufs": result.lufs,
        "true_peak_db": result.true_peak_db,
        "rate": info.samplerate,
        "channels": info.channels,
        "wav_mb": wav.stat().st_size / 1e6,
        "mp3_mb": result.exported.mp3.stat().st_size / 1e6,
    }


def child_in_memory(ws_root: Path, script: Path) -> dict[str, object]:
    """The old path: every cached line read into memory, ``mix_episode`` + ``export_episode``
    (what ``render_episode`` did before it streamed; same timeline and settings)."""
    from core.episodes.export import export_episode
    from core.episodes.master import mix_episode
    from core.episodes.mixing import TimelineItem, TimelineLine
    from core.episodes.render import _cue_item, episode_mix_settings, line_cache_key, line_seed
    from core.episodes.script import Line, SfxCue, load_script
    from core.episodes.synthesis.backends import make_backend
    from core.episodes.synthesis.cache import RenderCache
    from core.workspace import Workspace

    ws = Workspace.open(ws_root)
    t0 = time.perf_counter()
    episode = load_script(script, ws)
    engine = make_backend(ws, "draft")
    cache = RenderCache(ws.episodes_dir / script.stem / "cache")
    items: list[TimelineItem] = []
    for item in episode.items:
        if isinstance(item, Line):
            seed = line_seed(0, item)
            got = cache.get(line_cache_key(ws, engine, item, 0))
            assert got is not None, "the bench's cache is incomplete"
            line = TimelineLine(item.index, item.speaker, item.text, got.audio,
                                got.sample_rate, seed, engine.name, item.chapter)  # fmt: skip
            items.append(line)
        elif not isinstance(item, SfxCue):  # this path leaves sound effects out
            items.append(_cue_item(item))
    settings = episode_mix_settings(ws, episode, items)
    mixed = mix_episode(items, settings)
    export_episode(mixed, ws.episodes_dir / script.stem, script.stem, title=episode.title)
    return {"seconds": time.perf_counter() - t0, "minutes": mixed.duration_sec / 60,
            "rate": mixed.sample_rate, "channels": mixed.channels}  # fmt: skip


def run_child(kind: str, ws_root: Path, script: Path) -> tuple[dict[str, object], float, float]:
    """Run one child; its result, peak RSS (MB, the kernel's ru_maxrss) and wall seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(ws_root), str(script)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{kind} child failed ({proc.returncode}) on {script.name}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024, wall


# ------------------------------------------------------------------------------ parent


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=418.0)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)}")  # fmt: skip
    parser.add_argument("--baseline-minutes", default="5,15",
                        help="lengths of the in-memory baseline ('' to skip)")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WS", "SCRIPT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.child:
        kind, ws_root, script = args.child
        fn = child_streamed if kind == "streamed" else child_in_memory
        print(json.dumps(fn(Path(ws_root), Path(script))))
        return
    variants = [v for v in args.variants.split(",") if v]
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    base_minutes = [float(m) for m in args.baseline_minutes.split(",") if m]
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="podforge-render-memory-"))
    try:
        run(scratch, variants, args.minutes, base_minutes)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


def run(scratch: Path, variants: list[str], minutes: float, base_minutes: list[float]) -> None:
    cpus = len(os.sched_getaffinity(0))
    print(f"cpus: {cpus}, load average before: {os.getloadavg()[0]:.2f}")
    labels = variants + [f"{variants[0]}@{m:g}" for m in base_minutes]
    lengths = {label: minutes for label in variants}
    lengths.update({f"{variants[0]}@{m:g}": m for m in base_minutes})
    t0 = time.perf_counter()
    scripts = build(scratch, labels, lengths)
    ws_root = scratch / "ws"
    print(f"built the workspace and its render cache in {time.perf_counter() - t0:.1f} s")

    baseline: list[tuple[float, float]] = []
    for m in base_minutes:
        label = f"{variants[0]}@{m:g}"
        got, peak, wall = run_child("in-memory", ws_root, scripts[label])
        baseline.append((float(got["minutes"]), peak))  # type: ignore[arg-type]
        print(f"baseline, old in-memory path (mix_episode + export_episode), {variants[0]}, "
              f"{got['minutes']:.1f} min at {got['rate']} Hz x{got['channels']}: "
              f"peak RSS {peak:.0f} MB, {wall:.1f} s wall")  # fmt: skip
        shutil.rmtree(ws_root / "episodes" / scripts[label].stem)
    if baseline:
        if len(baseline) > 1:
            (m0, p0), (m1, p1) = baseline[0], baseline[-1]
            slope = (p1 - p0) / (m1 - m0)
            fixed = p0 - slope * m0
        else:
            slope, fixed = baseline[0][1] / baseline[0][0], 0.0
        print(f"  baseline fit: {fixed:.0f} MB + {slope:.1f} MB per minute "
              f"-> {fixed + slope * minutes:.0f} MB extrapolated to {minutes:g} min")  # fmt: skip

    for variant in variants:
        print(f"{variant}: rendering {minutes:g} min (streamed, fully cached) ...", flush=True)
        got, peak, wall = run_child("streamed", ws_root, scripts[variant])
        verdict = "OK" if peak < TARGET_MB else "OVER"
        print(f"{variant}: {got['minutes']:.1f} min, {got['lines']} lines "
              f"({got['cached']} cached, {got['rendered']} synthesised), {got['rate']} Hz "
              f"x{got['channels']}, WAV {got['wav_mb']:.0f} MB, MP3 {got['mp3_mb']:.0f} MB, "
              f"{got['lufs']:.2f} LUFS, {got['true_peak_db']:.2f} dBTP")  # fmt: skip
        print(f"  peak RSS {peak:.0f} MB (target < {TARGET_MB} MB: {verdict}), "
              f"wall {wall:.1f} s (render_episode {got['seconds']:.1f} s)")  # fmt: skip
        if baseline and variant == variants[0]:
            print(
                f"  old in-memory path extrapolated to this length: "
                f"{fixed + slope * minutes:.0f} MB = {(fixed + slope * minutes) / peak:.1f}x"
            )
        shutil.rmtree(ws_root / "episodes" / scripts[variant].stem, ignore_errors=True)
        shutil.rmtree(ws_root / ".tmp", ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
