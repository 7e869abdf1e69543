"""podforge replaces or deletes only folders and files it made, and only where they belong."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.atomic import FOLDER_MARKER, folder_kind
from core.catalog import Catalog
from core.dataset.exports import export, ljspeech_id
from core.dataset.ingest import accept_passing
from core.errors import ExportError, FolderSafetyError, ModelError, TrainingError
from core.workspace import Workspace


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: folders as None, files as their bytes."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def accepted(demo_copy: Workspace) -> Workspace:
    assert accept_passing(demo_copy) > 0
    return demo_copy


# ------------------------------------------------------------------ dataset exports


@pytest.mark.parametrize(
    "name",
    ["{outside}", "../raw", "..", "../../escape", ".", "", "a/b", ".hidden", "x\ny", "x" * 101],
)
def test_an_export_name_must_be_a_plain_name_inside_exports(
    accepted: Workspace, tmp_path: Path, name: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not podforge's")
    name = name.format(outside=outside)
    before = _tree(tmp_path)
    with pytest.raises(ExportError) as exc:
        export(accepted, "jsonl", name=name)
    message = str(exc.value)
    assert "\n" not in message and repr(name) in message and "plain folder name" in message
    assert _tree(tmp_path) == before  # nothing written anywhere, the catalog included


def test_an_export_never_replaces_a_folder_podforge_did_not_make(accepted: Workspace) -> None:
    mine = accepted.exports_dir / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("months of work")
    before = _tree(accepted.root)
    with pytest.raises(FolderSafetyError) as exc:
        export(accepted, "ljspeech", name="mine")
    assert str(mine) in str(exc.value) and FOLDER_MARKER in str(exc.value)
    assert _tree(accepted.root) == before  # the catalog's splits were not written either
    with Catalog.open(accepted.catalog_path) as cat:
        assert all(s.split is None for s in cat.segments())
    # A marked export is podforge's: replaced whole.
    result = export(accepted, "ljspeech", name="mine2")
    assert folder_kind(result.folder) == "export"
    (result.folder / "stale.txt").write_text("old")
    export(accepted, "jsonl", name="mine2")
    assert not (result.folder / "stale.txt").exists()
    assert (result.folder / "train" / "metadata.jsonl").is_file()


def test_an_export_written_before_markers_is_still_replaced(accepted: Workspace) -> None:
    for fmt in ("jsonl", "ljspeech", "audiofolder"):
        folder = export(accepted, fmt).folder
        (folder / FOLDER_MARKER).unlink()  # as an older podforge left it
        export(accepted, fmt)
        assert folder_kind(folder) == "export"
    # One file more and it is no longer that layout: refused.
    (accepted.exports_dir / "jsonl" / FOLDER_MARKER).unlink()
    (accepted.exports_dir / "jsonl" / "README").write_text("mine")
    with pytest.raises(FolderSafetyError):
        export(accepted, "jsonl")
    assert (accepted.exports_dir / "jsonl" / "README").read_text() == "mine"


def test_ljspeech_ids_are_safe_and_unique() -> None:
    used: set[str] = set()
    ids = [ljspeech_id(s, used) for s in ("a|b", "a b", "a\nb", ".hidden", "|", "ok-1.x")]
    assert ids == ["a_b", "a_b-2", "a_b-3", "hidden", "_", "ok-1.x"]


# ------------------------------------------------------------------ voices/<speaker>/


WEIGHTS = np.arange(4, dtype=np.float32)


def _run_with_a_checkpoint(ws: Workspace, speaker: str = "alice") -> Path:
    """A run as training leaves it: config.toml and one checkpoint (a small safetensors file
    stands in for the weights: the export stamps the consent hash into its metadata)."""
    from safetensors.numpy import save_file

    from core.training.runs import create_run

    run_dir = create_run(ws, speaker, steps=2)
    checkpoint = run_dir / "checkpoints" / "step-2"
    (checkpoint / "adapter").mkdir(parents=True)
    (checkpoint / "adapter" / "adapter_config.json").write_text("{}\n")
    save_file({"w": WEIGHTS}, str(checkpoint / "adapter" / "adapter_model.safetensors"))
    (checkpoint / "state.pt").write_bytes(b"state")
    return run_dir


def test_a_voice_export_never_replaces_a_folder_podforge_did_not_make(
    accepted: Workspace,
) -> None:
    from core.training.export import export_adapter

    run_dir = _run_with_a_checkpoint(accepted)
    voice = accepted.voices_dir / "alice"
    voice.mkdir(parents=True)
    (voice / "my-notes.txt").write_text("hand-made")
    before = _tree(accepted.root)
    with pytest.raises(FolderSafetyError) as exc:
        export_adapter(accepted, run_dir)
    assert str(voice) in str(exc.value) and "\n" not in str(exc.value)
    assert _tree(accepted.root) == before
    (voice / "my-notes.txt").unlink()
    voice.rmdir()
    assert export_adapter(accepted, run_dir) == voice
    assert folder_kind(voice) == "voice"
    from safetensors.numpy import load_file

    assert np.array_equal(
        load_file(str(voice / "adapter" / "adapter_model.safetensors"))["w"], WEIGHTS
    )
    export_adapter(accepted, run_dir)  # ours now: replaced
    assert sorted(p.name for p in accepted.voices_dir.iterdir()) == ["alice"]


def test_a_voice_export_keeps_the_evaluation_history(accepted: Workspace) -> None:
    """``podforge eval --draft`` writes ``voices/<speaker>/eval/`` before any voice exists."""
    from core.training.export import export_adapter

    run_dir = _run_with_a_checkpoint(accepted)
    reports = accepted.voices_dir / "alice" / "eval"
    reports.mkdir(parents=True)
    (reports / "20260101T000000.000000Z.json").write_text(json.dumps({"voice": "alice"}))
    voice = export_adapter(accepted, run_dir)
    assert (voice / "eval" / "20260101T000000.000000Z.json").is_file()
    (voice / "eval" / "20260102T000000.000000Z.json").write_text("{}")
    export_adapter(accepted, run_dir)
    assert sorted(p.name for p in (voice / "eval").iterdir()) == [
        "20260101T000000.000000Z.json", "20260102T000000.000000Z.json",
    ]  # fmt: skip
    # A voice exported by a podforge without markers is recognised by its exact layout.
    (voice / FOLDER_MARKER).unlink()
    export_adapter(accepted, run_dir)
    assert folder_kind(voice) == "voice"


def test_a_run_whose_speaker_is_not_a_speaker_name_is_refused(
    accepted: Workspace, tmp_path: Path
) -> None:
    from core.training.export import export_adapter

    run_dir = _run_with_a_checkpoint(accepted)
    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace('speaker = "alice"', 'speaker = "../raw"'))
    before = _tree(tmp_path)
    with pytest.raises(TrainingError, match="not a valid speaker name"):
        export_adapter(accepted, run_dir)
    assert _tree(tmp_path) == before


# ------------------------------------------------------------------ episodes


SCRIPT = '+++\ntitle = "T"\n[speakers]\nA = "alice"\n+++\n\nA: Hello there.\n'


def test_a_script_name_that_names_no_episode_folder_is_refused(demo_copy: Workspace) -> None:
    from core.episodes.render import render_episode

    episodes = demo_copy.episodes_dir
    (episodes / "cache").mkdir(parents=True)
    (episodes / "cache" / "cache.wav").write_bytes(b"the episode called cache")
    for stem in (".", ".."):  # "..md" and "...md"
        script = demo_copy.scripts_dir / f"{stem}.md"
        script.write_text(SCRIPT)
        before = _tree(demo_copy.root)
        with pytest.raises(FolderSafetyError, match="no usable episode folder"):
            render_episode(demo_copy, script, backend="draft")
        assert _tree(demo_copy.root) == before


def test_the_render_cache_prunes_only_its_own_files(demo_copy: Workspace) -> None:
    from core.episodes.render import render_episode

    script = demo_copy.scripts_dir / "short.md"
    script.write_text(SCRIPT)
    cache = demo_copy.episodes_dir / "short" / "cache"
    cache.mkdir(parents=True)
    (cache / "my-take.wav").write_bytes(b"kept")
    stale = cache / ("0" * 32 + ".wav")
    stale.write_bytes(b"a stale line")
    render_episode(demo_copy, script, backend="draft")
    assert (cache / "my-take.wav").read_bytes() == b"kept"
    assert not stale.exists()


# ------------------------------------------------------------------ tiny model caches


def test_the_tiny_ecapa_cache_never_replaces_a_folder_it_did_not_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.models.tiny.ecapa import TINY_ECAPA_VERSION, tiny_ecapa_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "podforge" / f"tiny-ecapa-v{TINY_ECAPA_VERSION}"
    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text("someone's own model\n")
    before = _tree(tmp_path)
    with pytest.raises(ModelError, match="is not a tiny ECAPA build"):
        tiny_ecapa_path()
    assert _tree(tmp_path) == before
    # (an empty folder or a stale build of ours is replaced: tests/test_speaker_id.py)


# ------------------------------------------------------------------ podforge init


def _podforge(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("podforge")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_init_in_a_folder_with_files_adds_its_folders_and_touches_none(tmp_path: Path) -> None:
    folder = tmp_path / "show"
    (folder / "recordings").mkdir(parents=True)
    (folder / "recordings" / "take.wav").write_bytes(b"RIFF mine")
    (folder / "notes.txt").write_text("mine")
    result = _podforge("init", str(folder))
    assert result.returncode == 0, result.stderr
    assert (folder / "recordings" / "take.wav").read_bytes() == b"RIFF mine"
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "workspace.toml").is_file() and (folder / "exports").is_dir()


@pytest.mark.parametrize("taken", ["catalog.sqlite", "exports"])
def test_init_refuses_a_file_it_would_write_over_and_writes_nothing(
    tmp_path: Path, taken: str
) -> None:
    folder = tmp_path / "show"
    folder.mkdir()
    if taken == "catalog.sqlite":  # someone's own SQLite database: init would migrate it
        with sqlite3.connect(folder / taken) as db:
            db.execute("CREATE TABLE mine (x)")
    else:  # a file where a workspace folder goes
        (folder / taken).write_text("a file")
    (folder / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    result = _podforge("init", str(folder))
    assert result.returncode == 1
    assert result.stderr.startswith("podforge: error: ") and result.stderr.count("\n") == 1
    assert str(folder / taken) in result.stderr and "move it away" in result.stderr
    assert _tree(tmp_path) == before
