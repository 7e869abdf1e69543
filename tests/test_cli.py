"""The podforge command line: commands work, user mistakes are one line and exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.workspace import Workspace
from tui.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess, as a user runs it."""
    exe = Path(sys.executable).with_name("podforge")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_init_and_speaker_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    ws_dir = tmp_path / "show"
    result = runner.invoke(main, ["init", str(ws_dir), "--name", "My Show"])
    assert result.exit_code == 0, result.output
    assert "created workspace 'My Show'" in result.output
    result = runner.invoke(
        main,
        ["speaker", "add", str(ws_dir), "dana", "--consent", "signed form 7",
         "--granted-by", "Dana D", "--date", "2026-10-01"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    consent = Workspace.open(ws_dir).require_consent("dana")
    assert (consent.granted_by, consent.statement) == ("Dana D", "signed form 7")
    assert consent.granted_at.date().isoformat() == "2026-10-01"
    result = runner.invoke(main, ["speaker", "list", str(ws_dir)])
    assert "dana" in result.output and "Dana D, 2026-10-01" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["open", "{tmp}/nowhere"], "no such folder"),
        (["{tmp}"], "not a podforge workspace"),
        (["speaker", "add", "{tmp}", "x", "--consent", "y"], "not a podforge workspace"),
        (["doctor", "{tmp}"], "not a podforge workspace"),
    ],
)
def test_user_mistakes_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = _run(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 1
    assert result.stderr.startswith("podforge: error: ")
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_speaker_name_and_corrupt_toml(tmp_path: Path) -> None:
    Workspace.create(tmp_path / "s")
    result = _run("speaker", "add", str(tmp_path / "s"), "Bad Name", "--consent", "x")
    assert result.returncode == 1 and "not allowed" in result.stderr
    (tmp_path / "s" / "workspace.toml").write_text("schema = 99\n")
    result = _run("speaker", "list", str(tmp_path / "s"))
    assert result.returncode == 1 and "newer podforge" in result.stderr


def test_init_refuses_an_existing_workspace(tmp_path: Path) -> None:
    Workspace.create(tmp_path / "s")
    result = _run("init", str(tmp_path / "s"))
    assert result.returncode == 1 and "already a workspace" in result.stderr


def test_demo_no_open_builds_once(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    first = _run("demo", str(target), "--no-open", "--seconds", "10")
    assert first.returncode == 0, first.stderr
    assert "built demo workspace" in first.stdout
    assert (target / "scripts" / "welcome.md").is_file()
    stamp = (target / "workspace.toml").stat().st_mtime_ns
    again = _run("demo", str(target), "--no-open")
    assert again.returncode == 0 and "built" not in again.stdout  # reused, not rebuilt
    assert (target / "workspace.toml").stat().st_mtime_ns == stamp


def test_ingest_accept_export_from_the_command_line(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from core.episodes.synthesis.draft import DraftVoice, synthesize

    ws_dir = tmp_path / "show"
    assert _run("init", str(ws_dir)).returncode == 0
    added = _run("speaker", "add", str(ws_dir), "dana", "--consent", "ok", "--granted-by", "Dana")
    assert added.returncode == 0, added.stderr
    sr = 24000
    texts = ("One two three four five six seven.", "Another sentence comes right after it.")
    speech = [synthesize(t, DraftVoice(), sample_rate=sr) * 0.3 for t in texts]
    gap = np.zeros(sr // 2, np.float32)
    sf.write(tmp_path / "take.wav", np.concatenate([gap, speech[0], gap, speech[1], gap]), sr)
    a_end = 0.5 + len(speech[0]) / sr
    b_start, b_end = a_end + 0.5, a_end + 0.5 + len(speech[1]) / sr
    cues = [(0.5, a_end, texts[0]), (b_start, b_end, texts[1])]
    (tmp_path / "take.srt").write_text(
        "\n".join(f"{n}\n{_ts(a)} --> {_ts(b)}\n{t}\n" for n, (a, b, t) in enumerate(cues, 1))
    )
    (tmp_path / "broken.wav").write_text("not audio")

    result = _run("ingest", str(ws_dir), str(tmp_path / "take.wav"), str(tmp_path / "broken.wav"),
                  "--speaker", "dana", "--no-asr", "--no-speaker-filter")  # fmt: skip
    assert result.returncode == 1  # one file failed; the other was ingested
    assert "take.wav" in result.stderr and "broken.wav" in result.stderr
    assert "1 file(s) ok, 1 failed" in result.stderr
    assert "Traceback" not in result.stderr

    again = _run("ingest", str(ws_dir), str(tmp_path / "take.wav"), "--speaker", "dana",
                 "--no-asr", "--no-speaker-filter")  # fmt: skip
    assert again.returncode == 0 and "already ingested" in again.stderr

    unknown = _run("ingest", str(ws_dir), str(tmp_path / "take.wav"), "--speaker", "zed")
    assert unknown.returncode == 1 and "unknown speaker 'zed'" in unknown.stderr

    accepted = _run("accept", str(ws_dir), "--passing")
    assert accepted.returncode == 0 and accepted.stdout.startswith("accepted ")

    assert accepted.stdout.startswith("accepted 1 ")
    exported = _run("export", str(ws_dir), "--format", "ljspeech")
    assert exported.returncode == 0, exported.stderr
    rows = (ws_dir / "exports" / "ljspeech" / "metadata.csv").read_text().splitlines()
    assert len(rows) == 1 and rows[0].endswith(f"|{' '.join(texts)}|{' '.join(texts)}")


def _ts(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"00:00:{ms // 1000:02d},{ms % 1000:03d}"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--consent", "", "--granted-by", "Emma C"], "statement is empty"),
        (["--consent", "  ", "--granted-by", "Emma C"], "statement is empty"),
        (["--consent", "signed form 9"], "--granted-by"),
        (["--consent", "signed form 9", "--granted-by", " "], "who granted it"),
    ],
)
def test_speaker_add_refuses_an_incomplete_consent_record(
    tmp_path: Path, extra: list[str], expected: str
) -> None:
    ws_dir = tmp_path / "show"
    Workspace.create(ws_dir)
    before = (ws_dir / "workspace.toml").read_bytes()
    result = _run("speaker", "add", str(ws_dir), "emmac", *extra)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("podforge: error: speaker 'emmac': ")
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert (ws_dir / "workspace.toml").read_bytes() == before  # nothing recorded, nothing invented


def test_speaker_add_records_only_what_was_given(tmp_path: Path) -> None:
    ws_dir = tmp_path / "show"
    Workspace.create(ws_dir)
    result = _run(
        "speaker", "add", str(ws_dir), "emmac", "--consent", "Emma agreed on tape",
        "--granted-by", "Emma Clark", "--scope", "training only",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "does not cover synthesis" in result.stdout  # said now, not at the first render
    consent = Workspace.open(ws_dir).require_consent("emmac", "training")
    assert (consent.granted_by, consent.statement, consent.scope, consent.evidence) == (
        "Emma Clark",
        "Emma agreed on tape",
        "training only",
        "",
    )


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("name", ["{outside}", "../raw", "..", "../../escape"])
def test_export_name_outside_exports_is_refused_and_touches_nothing(
    demo_copy: Workspace, tmp_path: Path, name: str
) -> None:
    from core.dataset.ingest import accept_passing

    assert accept_passing(demo_copy) > 0  # so that only the name can stop the export
    sentinel = tmp_path / "sentinel"  # an unrelated folder with files, outside the workspace
    (sentinel / "deep").mkdir(parents=True)
    (sentinel / "a.txt").write_text("keep me")
    (sentinel / "deep" / "b.bin").write_bytes(bytes(range(256)))
    assert demo_copy.root == tmp_path / "demo"  # exports/../../escape is tmp_path/escape
    (tmp_path / "escape").mkdir()
    (tmp_path / "escape" / "c.txt").write_text("keep me too")
    assert any((demo_copy.root / "raw").rglob("*.*"))  # the imported originals
    before = _snapshot(tmp_path)  # the workspace (raw/, catalog...) and both sentinels
    result = _run("export", str(demo_copy.root), "--name", name.format(outside=sentinel))
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("podforge: error: ") and result.stderr.count("\n") == 1
    assert "export name" in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before
