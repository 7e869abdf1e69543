"""Speaker embeddings: the tiny ECAPA stand-in, the real loading path, similarity, errors.

The tiny model has random weights, so speaker identity means nothing here; what is real is
the plumbing: ``EncoderClassifier.from_hparams`` with the ``pretrained_path`` override,
offline, batching, normalisation and the errors a user sees.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from core.errors import ModelError
from core.models.device import resolve_device
from core.models.speaker import (
    SpeakerEncoder,
    cosine,
    default_savedir,
    load_speaker_encoder,
    resolve_speaker_model,
    similarity_to_anchors,
)
from core.models.tiny.ecapa import (
    CHECKPOINT_FILES,
    EMBEDDING_DIM,
    TINY_ECAPA_VERSION,
    build_tiny_ecapa,
    tiny_ecapa_path,
)
from core.workspace import Workspace
from tests.conftest import REPO

SR = 16000
HUB_ID = "speechbrain/spkrec-ecapa-voxceleb"


def _voice(seconds: float, f0: float, seed: int) -> npt.NDArray[np.float32]:
    """A buzzy harmonic tone with a little noise: speech-like enough for Fbank features."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)) + 0.02 * rng.standard_normal(t.size)
    return (0.2 * x).astype(np.float32)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def tiny(cache_home: Path) -> SpeakerEncoder:
    """The tiny model, loaded the way every model is: ``load_speaker_encoder("tiny")``."""
    return load_speaker_encoder("tiny", device="cpu")


# ------------------------------------------------------------------ the tiny model folder


def test_tiny_ecapa_builds_deterministically_and_idempotently(tmp_path: Path) -> None:
    a = build_tiny_ecapa(tmp_path / "a")
    b = build_tiny_ecapa(tmp_path / "b")
    expected = {"hyperparams.yaml", "podforge-tiny.json", *CHECKPOINT_FILES}
    assert set(_hashes(a)) == expected
    assert _hashes(a) == _hashes(b)  # byte-identical, from the fixed seed

    before = _hashes(a)
    assert build_tiny_ecapa(a) == a  # idempotent: a complete build is left as it is
    assert _hashes(a) == before

    yaml = (a / "hyperparams.yaml").read_text(encoding="utf-8")
    assert "pretrained_path: !PLACEHOLDER" in yaml
    for key in ("embedding_model", "mean_var_norm_emb", "classifier"):
        assert f"{key}: !ref <pretrained_path>/{key}.ckpt" in yaml
    assert "label_encoder: !ref <pretrained_path>/label_encoder.txt" in yaml
    # Far smaller than the real ~80 MB model.
    assert sum(p.stat().st_size for p in a.iterdir()) < 1_000_000


def test_tiny_ecapa_build_leaves_global_rng_alone(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_ecapa(tmp_path / "m")
    assert torch.equal(torch.rand(3), expected)


def test_tiny_ecapa_path_is_built_once_in_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tiny_ecapa_path()
    assert path == tmp_path / "podforge" / f"tiny-ecapa-v{TINY_ECAPA_VERSION}"
    stamp = json.loads((path / "podforge-tiny.json").read_text(encoding="utf-8"))
    assert stamp["version"] == TINY_ECAPA_VERSION
    # Nothing left behind by the temp-dir-and-rename build.
    assert [p.name for p in (tmp_path / "podforge").iterdir()] == [path.name]
    mtime = (path / "embedding_model.ckpt").stat().st_mtime_ns
    assert tiny_ecapa_path() == path
    assert (path / "embedding_model.ckpt").stat().st_mtime_ns == mtime


def test_tiny_ecapa_path_replaces_an_incomplete_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An incomplete or stale build of ours (stamped) is replaced; see test_folder_safety for
    a folder that is not ours."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    broken = tmp_path / "podforge" / f"tiny-ecapa-v{TINY_ECAPA_VERSION}"
    broken.mkdir(parents=True)
    (broken / "hyperparams.yaml").write_text("half a model\n", encoding="utf-8")
    (broken / "podforge-tiny.json").write_text('{"model": "tiny-ecapa", "version": 0}\n')
    path = tiny_ecapa_path()
    assert path == broken
    assert (path / "podforge-tiny.json").is_file()
    assert (path / "hyperparams.yaml").read_text(encoding="utf-8") != "half a model\n"
    assert [p.name for p in (tmp_path / "podforge").iterdir()] == [path.name]


# ------------------------------------------------------------------ loading


def test_resolve_speaker_model(tmp_path: Path, cache_home: Path) -> None:
    assert resolve_speaker_model("tiny") == str(tiny_ecapa_path())
    assert resolve_speaker_model(str(tmp_path)) == str(tmp_path.resolve())
    assert resolve_speaker_model(HUB_ID) == HUB_ID
    assert default_savedir(HUB_ID) == (
        cache_home / "podforge" / "speechbrain" / "speechbrain--spkrec-ecapa-voxceleb"
    )


def test_tiny_loads_through_the_real_speechbrain_path(
    tiny: SpeakerEncoder, cache_home: Path
) -> None:
    import torch
    from speechbrain.inference.classifiers import EncoderClassifier

    folder = tiny_ecapa_path()
    assert folder.is_relative_to(cache_home)
    assert tiny.embedding_dim == EMBEDDING_DIM
    assert tiny.device == "cpu"
    assert tiny.source == str(folder)
    classifier = tiny._classifier
    assert type(classifier) is EncoderClassifier
    assert classifier.hparams.pretrained_path == str(folder)  # the override took effect
    # The pretrainer really loaded the checkpoints (not a fresh random init).
    saved = torch.load(folder / "embedding_model.ckpt", map_location="cpu")
    loaded = classifier.mods.embedding_model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert len(classifier.hparams.label_encoder) == 8
    # A local folder is read in place: nothing copied or symlinked anywhere.
    assert not (cache_home / "podforge" / "speechbrain").exists()
    assert not any(p.is_symlink() for p in folder.iterdir())


def test_a_local_download_of_the_real_layout_loads_offline(
    tiny: SpeakerEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real hyperparams point ``pretrained_path`` at the hub; a local folder must not."""
    folder = tmp_path / "spkrec-ecapa-voxceleb"
    shutil.copytree(tiny_ecapa_path(), folder)
    yaml = folder / "hyperparams.yaml"
    text = yaml.read_text(encoding="utf-8")
    yaml.write_text(text.replace("!PLACEHOLDER", HUB_ID), encoding="utf-8")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    savedir = tmp_path / "savedir"
    local = load_speaker_encoder(str(folder), device="cpu", savedir=savedir)
    assert local._classifier.hparams.pretrained_path == str(folder)
    clip = _voice(1.0, 140.0, seed=3)
    np.testing.assert_allclose(local.embed(clip), tiny.embed(clip), atol=1e-6)
    assert not savedir.exists() or not any(savedir.iterdir())  # read in place, nothing copied


# ------------------------------------------------------------------ embeddings


def test_embeddings_are_unit_vectors_and_deterministic(tiny: SpeakerEncoder) -> None:
    clip = _voice(2.0, 180.0, seed=1)
    e = tiny.embed(clip)
    assert e.shape == (EMBEDDING_DIM,)
    assert e.dtype == np.float32
    assert np.all(np.isfinite(e))
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(tiny.embed(clip), e)
    # The input is not modified and a (n, 1) column is taken as mono.
    np.testing.assert_allclose(tiny.embed(clip[:, None]), e, atol=1e-6)


def test_a_reloaded_model_gives_the_same_embeddings(tiny: SpeakerEncoder) -> None:
    clip = _voice(1.5, 120.0, seed=2)
    again = load_speaker_encoder("tiny", device="cpu")
    np.testing.assert_allclose(again.embed(clip), tiny.embed(clip), atol=1e-6)


def test_embed_many_equals_embed_per_clip_across_lengths(tiny: SpeakerEncoder) -> None:
    lengths = [3.0, 0.5, 2.0, 3.0, 1.234, 2.0]
    clips = [_voice(s, 100.0 + 30 * i, seed=i) for i, s in enumerate(lengths)]
    single = np.stack([tiny.embed(c) for c in clips])
    for batch_size in (1, 2, 16):
        many = tiny.embed_many(clips, batch_size=batch_size)
        assert many.shape == (len(clips), EMBEDDING_DIM)
        assert many.dtype == np.float32
        np.testing.assert_allclose(many, single, atol=1e-4)
    assert tiny.embed_many([]).shape == (0, EMBEDDING_DIM)


def test_embed_many_padded_batches_are_close(tiny: SpeakerEncoder) -> None:
    """``exact=False`` pads clips of different lengths into one batch (with wav_lens)."""
    clips = [_voice(s, 150.0, seed=7) for s in (3.0, 0.5, 1.7)]
    single = np.stack([tiny.embed(c) for c in clips])
    padded = tiny.embed_many(clips, exact=False)
    assert padded.shape == single.shape
    np.testing.assert_allclose(np.linalg.norm(padded, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(padded[0], single[0], atol=1e-5)  # the longest: no padding
    assert np.all(np.sum(padded * single, axis=1) > 0.999)


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        (np.zeros(100, np.float32), "too short"),
        (np.full(SR, np.nan, np.float32), "NaN"),
        (np.zeros((SR, 2), np.float32), "mono"),
    ],
)
def test_bad_clips_are_refused(
    tiny: SpeakerEncoder, clip: npt.NDArray[np.float32], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tiny.embed_many([_voice(1.0, 100.0, seed=0), clip])


def test_similarity_to_anchors_plumbing(tiny: SpeakerEncoder) -> None:
    clips = [_voice(1.0 + 0.25 * i, 90.0 + 25 * i, seed=i) for i in range(5)]
    emb = tiny.embed_many(clips)
    anchors = emb[:2]
    sims = similarity_to_anchors(emb, anchors)
    assert sims.shape == (5,)
    assert sims.dtype == np.float32
    assert np.all((sims >= -1.0) & (sims <= 1.0))
    # The mean over anchors, by definition.
    np.testing.assert_allclose(sims, (emb @ anchors.T).mean(axis=1), atol=1e-5)
    # A clip against itself as its only anchor.
    assert similarity_to_anchors(emb[3], emb[3])[0] == pytest.approx(1.0, abs=1e-5)
    assert similarity_to_anchors(emb[:0], anchors).shape == (0,)
    with pytest.raises(ValueError, match="anchor"):
        similarity_to_anchors(emb, emb[:0])


def test_cosine_shapes() -> None:
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.0, 2.0, 0.0])
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, b) == pytest.approx(0.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, np.zeros(3)) == 0.0
    rows = np.stack([a, b, a + b])
    assert np.asarray(cosine(rows, a)).shape == (3,)
    assert np.asarray(cosine(a, rows)).shape == (3,)
    matrix = np.asarray(cosine(rows, rows[:2]))
    assert matrix.shape == (3, 2)
    np.testing.assert_allclose(matrix[:, 0], [1.0, 0.0, 1 / np.sqrt(5.0)], atol=1e-6)
    with pytest.raises(ValueError):
        cosine(a, np.ones(4))


def test_demo_recordings_embed(tiny: SpeakerEncoder, demo_workspace: Workspace) -> None:
    """Real (espeak) speech cut at the demo's cue times: the whole path on actual audio."""
    from core.audio.io import read

    truth = json.loads((demo_workspace.assets_dir / "demo-truth.json").read_text("utf-8"))
    by_speaker: dict[str, list[npt.NDArray[np.float32]]] = {}
    for rec in truth["recordings"].values():
        audio, _ = read(demo_workspace.root / rec["raw"], target_rate=SR)
        for cue in rec["cues"][:3]:
            clip = audio[int(cue["start_sec"] * SR) : int(cue["end_sec"] * SR)]
            by_speaker.setdefault(rec["speaker"], []).append(clip)
    assert set(by_speaker) == {"alice", "bob"}
    alice = tiny.embed_many(by_speaker["alice"])
    bob = tiny.embed_many(by_speaker["bob"])
    for emb in (alice, bob):
        assert np.all(np.isfinite(emb))
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = similarity_to_anchors(np.concatenate([alice, bob]), alice[:2])
    assert sims.shape == (len(alice) + len(bob),)
    assert np.all(np.abs(sims) <= 1.0)


# ------------------------------------------------------------------ errors


def _assert_one_line(exc: pytest.ExceptionInfo[ModelError], *needles: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text


def test_hub_model_not_available_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    # huggingface_hub reads these once, when first imported (perhaps by an earlier test).
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as exc:
        load_speaker_encoder(HUB_ID, device="cpu")
    _assert_one_line(exc, f"'{HUB_ID}'", "not available offline", "models.speaker", '"tiny"')


def test_a_folder_that_is_not_a_model(not_a_model: Path) -> None:
    with pytest.raises(ModelError) as exc:
        load_speaker_encoder(str(not_a_model), device="cpu")
    _assert_one_line(exc, str(not_a_model), "hyperparams.yaml")


def test_a_model_folder_with_a_broken_checkpoint(tmp_path: Path) -> None:
    folder = build_tiny_ecapa(tmp_path / "broken")
    (folder / "embedding_model.ckpt").write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError) as exc:
        load_speaker_encoder(str(folder), device="cpu")
    _assert_one_line(exc, str(folder), "cannot be loaded")


def test_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ecapa"
    with pytest.raises(ModelError) as exc:
        load_speaker_encoder(str(missing), device="cpu")
    _assert_one_line(exc, str(missing), "does not exist")


def test_a_bad_device(tiny: SpeakerEncoder, cache_home: Path) -> None:
    with pytest.raises(ModelError) as exc:
        load_speaker_encoder("tiny", device="tpu")
    _assert_one_line(exc, "'tpu'", "models.device")


def test_cuda_asked_for_without_a_gpu(cache_home: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ModelError) as exc:
        load_speaker_encoder("tiny", device="cuda")
    _assert_one_line(exc, '"cuda"', "no CUDA GPU")


def test_device_rules() -> None:
    """One resolver for every model: PyTorch and CTranslate2 only say how many GPUs."""

    def never() -> int:
        raise AssertionError("the CPU needs no GPU count")

    def two() -> int:
        return 2

    def none() -> int:
        return 0

    speaker = {"first_gpu": "cuda:0"}  # speechbrain warns about a bare "cuda"
    assert resolve_device("cpu", "speaker model", never, "PyTorch", **speaker) == "cpu"
    assert resolve_device("auto", "speaker model", two, "PyTorch", **speaker) == "cuda:0"
    assert resolve_device("cuda", "speaker model", two, "PyTorch", **speaker) == "cuda:0"
    assert resolve_device("cuda:1", "speaker model", two, "PyTorch", **speaker) == "cuda:1"
    assert resolve_device("auto", "speaker model", none, "PyTorch", **speaker) == "cpu"
    assert resolve_device("auto", "TTS model", two, "PyTorch") == "cuda"
    assert resolve_device("cuda", "TTS model", two, "PyTorch") == "cuda"
    assert resolve_device("auto", "ASR model", two, "CTranslate2", indexed=False) == "cuda"
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ModelError) as exc:
            resolve_device(device, "TTS model", none, "PyTorch")
        _assert_one_line(exc, f'models.device = "{device}"', "PyTorch sees no CUDA GPU")
    for device in ("tpu", "", "cuda:x", "cuda:", "CUDA", " cpu"):
        with pytest.raises(ModelError) as exc:
            resolve_device(device, "speaker model", never, "PyTorch")
        _assert_one_line(exc, f"speaker model device {device!r}", "cuda:N", "models.device")
    with pytest.raises(ModelError) as exc:
        resolve_device("cuda:0", "ASR model", never, "CTranslate2", indexed=False)
    _assert_one_line(exc, "ASR model device 'cuda:0' is not one of auto, cpu, cuda:")


@pytest.mark.parametrize("model_id", ["./nowhere/ecapa", "../nowhere/ecapa", "~/nowhere/ecapa"])
def test_a_missing_relative_folder(model_id: str, cache_home: Path) -> None:
    with pytest.raises(ModelError) as exc:
        load_speaker_encoder(model_id, device="cpu")
    _assert_one_line(exc, f"'{model_id}'", "does not exist")


# ------------------------------------------------------------------ import cost


def test_importing_speaker_id_imports_neither_torch_nor_speechbrain() -> None:
    code = (
        "import sys, core.models.speaker, core.models.tiny.ecapa\n"
        "heavy = sorted(m for m in ('torch', 'speechbrain', 'torchaudio', 'huggingface_hub')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
