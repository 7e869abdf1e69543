"""``podforge doctor`` and the CUDA/driver facts behind it (core.doctor, core.models.cuda_info)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.doctor import model_presence
from core.models.cuda_info import (
    PROC_VERSION,
    cuda_unavailable_reason,
    driver_needed,
    driver_satisfies,
    driver_version,
)
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def _doctor(ws: Path, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("podforge")
    base = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    }
    return subprocess.run(
        [str(exe), "doctor", str(ws)], capture_output=True, text=True, timeout=120,
        env={**base, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip


# -- the driver table (NVIDIA's CUDA toolkit release notes, Linux) ------------------------


@pytest.mark.parametrize(
    ("cuda", "minimum", "compat"),
    [
        ("13.0", "580", "580"),
        ("13.1", "580", "580"),
        ("12.8", "570", "525"),
        ("12.6", "560", "525"),
        ("12.4", "550", "525"),
        ("12.1", "530", "525"),
        ("11.8", "520", "450"),
    ],
)
def test_driver_needed_per_cuda_release(cuda: str, minimum: str, compat: str) -> None:
    need = driver_needed(cuda)
    assert need is not None and (need.minimum, need.compat_minimum) == (minimum, compat)


def test_driver_needed_unknown_release_and_version_compare() -> None:
    assert driver_needed("10.2") is None and driver_needed("") is None
    assert not driver_satisfies("570.86.15", "580")
    assert driver_satisfies("580.65.06", "580") and driver_satisfies("581", "580")
    assert not driver_satisfies("garbage", "580")


def test_unavailable_reason_names_the_driver_found_and_the_one_needed() -> None:
    old = cuda_unavailable_reason("2.11.0+cu130", "13.0", "570.86.15")
    assert "570.86.15" in old and ">= 580" in old and "CUDA 13.0" in old
    assert "\n" not in old
    none = cuda_unavailable_reason("2.11.0+cu130", "13.0", None)
    assert none.startswith("no NVIDIA driver found") and ">= 580" in none
    assert "CPU-only" in cuda_unavailable_reason("2.11.0+cpu", None, None)


def test_driver_version_agrees_with_nvidia_smi_or_finds_none() -> None:
    found, source = driver_version()
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert found == out.stdout.splitlines()[0].strip(), source
    elif not PROC_VERSION.exists():
        try:
            import pynvml

            pynvml.nvmlInit()
            pytest.skip("NVML answers without nvidia-smi: nothing independent to compare with")
        except pynvml.NVMLError:
            assert found is None, source


# -- model presence, never downloading -----------------------------------------------------


def test_a_hub_model_in_the_cache_is_present_and_an_incomplete_folder_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import scan_cache_dir

    cache = tmp_path / "hf" / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--acme--csm-test"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert [r.repo_id for r in scan_cache_dir(cache).repos] == ["acme/csm-test"]  # valid layout
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = model_presence("tts", "acme/csm-test")
    assert found.present and str(repo / "snapshots" / commit) in found.detail
    absent = model_presence("tts", "acme/other")
    assert not absent.present and absent.fetch.startswith("uv run hf download acme/other")

    folder = tmp_path / "whisper"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    partial = model_presence("asr", str(folder))
    assert not partial.present and "model.bin" in partial.detail and not partial.fetch
    assert not model_presence("speaker", str(tmp_path / "nowhere")).present
    assert model_presence("speaker", "tiny").present


# -- the command --------------------------------------------------------------------------


@pytest.mark.slow
def test_doctor_on_tiny_models_reports_all_required_items_ok(workspace: Workspace) -> None:
    models = workspace.settings.models
    models.tts = models.asr = models.speaker = "tiny"
    workspace.save()
    result = _doctor(workspace.root)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for kind in ("tts", "asr", "speaker"):
        line = next(x for x in lines if f"models.{kind} = 'tiny'" in x)
        assert line.startswith("OK"), line
    assert any(x.startswith("OK") and "espeak-ng" in x for x in lines)
    assert any("NVIDIA driver" in x for x in lines) and any("CUDA" in x for x in lines)
    assert lines[-1].startswith("all required items OK")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_doctor_offline_names_each_missing_hub_model_and_downloads_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    assert workspace.settings.models.tts == "sesame/csm-1b"  # the quick-start defaults
    result = _doctor(
        workspace.root, HF_HUB_OFFLINE="1", HF_HOME=str(hf_home),
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    for model_id, repo in [
        ("sesame/csm-1b", "sesame/csm-1b"),
        ("large-v3", "Systran/faster-whisper-large-v3"),
        ("speechbrain/spkrec-ecapa-voxceleb", "speechbrain/spkrec-ecapa-voxceleb"),
    ]:
        line = next(x for x in out.splitlines() if f"= '{model_id}'" in x)
        assert line.startswith("MISSING") and "not in the Hugging Face cache" in line, line
        assert f"uv run hf download {repo}" in out
    assert result.stderr.startswith("podforge: error: 3 required item(s) missing")
    assert result.stderr.count("\n") == 1
    assert [p for p in hf_home.rglob("*") if p.is_file()] == []  # nothing was fetched
