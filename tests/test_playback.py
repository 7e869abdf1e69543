"""core.audio.playback on the real path: sounddevice -> PortAudio -> ALSA, in child processes.

sounddevice initialises PortAudio when it is imported, and PortAudio's ALSA backend
reads ``~/.asoundrc`` then, so every scenario runs in a child Python (this very file,
run as a script) whose HOME is a temporary folder holding the ALSA configuration it
needs. The pytest process itself never imports sounddevice.

Output devices used (all plain alsa-lib, no sound card, no server):

* **paced sink** — ``pcm.!default`` is ``plug`` (any rate/channels) -> ``file`` plugin
  writing raw 48 kHz stereo S16 into a FIFO -> ``null``. The child drains the FIFO at
  exactly 192,000 bytes/s from a thread (with the pipe shrunk to 4 KiB), so the device
  consumes audio in real time, like a sound card (0.5 s after play() the position reads
  about 0.52 s).
  Needed because ALSA's ``null`` PCM alone swallows audio as fast as it is written (a
  1.5 s tone "plays" in a few milliseconds), so no position can be watched on it.
* **null** — ``pcm.!default { type null }``: the brief's known-working device; a tone
  plays to its end and ``on_finished`` fires (instantly, see above).
* **no device** — ``pcm.!default { type hw card 99 }``: PortAudio finds no device at all
  (the default output is -1), as on a headless box.
* **no PortAudio** — ``ctypes.util.find_library`` made to miss ``portaudio`` before
  sounddevice is imported: sounddevice raises ``OSError('PortAudio library not found')``,
  exactly as on a machine without libportaudio2.

On a machine without libportaudio2 every scenario asserts the missing-library
``PlaybackError`` instead (never a skip).
"""

from __future__ import annotations

import ctypes.util
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_PORTAUDIO = ctypes.util.find_library("portaudio") is not None

SINK_RATE, SINK_CHANNELS, SINK_BYTES = 48000, 2, 2  # the paced sink's fixed format
F_SETPIPE_SZ = 1031  # Linux fcntl

NULL_ASOUNDRC = "pcm.!default { type null }\n"
NO_DEVICE_ASOUNDRC = "pcm.!default { type hw card 99 }\n"


def paced_asoundrc(fifo: Path) -> str:
    return (
        "pcm.!default { type plug slave { pcm paced rate 48000 channels 2 format S16_LE } }\n"
        f'pcm.paced {{ type file slave.pcm "null" file "{fifo}" format "raw" }}\n'
    )


# ---------------------------------------------------------------- parent side


def run_child(tmp_path: Path, scenario: str, asoundrc: str, *, timeout: float = 30) -> Any:
    """Run ``scenario`` in a child with HOME=tmp_path/home; return its JSON result."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".asoundrc").write_text(asoundrc.replace("@FIFO@", str(home / "sink")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALSA_", "PODFORGE_"))}
    env.pop("PULSE_SERVER", None)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")  # alsa-lib also reads ~/.config/alsa
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, __file__, scenario, str(home)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"child {scenario} failed:\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"child {scenario} printed nothing:\n{proc.stderr}"
    result = json.loads(lines[-1])
    result["_stderr"] = proc.stderr
    return result


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message
    assert "docs/PLAYBACK.md" in message


def assert_missing_library(result: dict[str, Any]) -> None:
    for key in ("check_output", "play_error"):
        assert "libportaudio2" in result[key], result
        assert_one_line(result[key])
    assert result["play_error_type"] == "PlaybackError"
    assert result["constructed"] is True


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """All paced-sink scenarios, run once in one child."""
    tmp = tmp_path_factory.mktemp("paced")
    scenario = "paced" if HAVE_PORTAUDIO else "unavailable"
    result: dict[str, Any] = run_child(tmp, scenario, paced_asoundrc(Path("@FIFO@")))
    return result


def run_with_portaudio(tmp_path: Path, scenario: str, asoundrc: str) -> Any:
    """``scenario``'s result, or ``None`` once the missing-library message has been checked
    (without libportaudio2 every scenario degrades to that message)."""
    if not HAVE_PORTAUDIO:
        assert_missing_library(run_child(tmp_path, "unavailable", asoundrc))
        return None
    return run_child(tmp_path, scenario, asoundrc)


def needs_portaudio(paced: dict[str, Any]) -> None:
    """Without libportaudio2 the scenario degrades to the missing-library assertion."""
    if not HAVE_PORTAUDIO:
        assert_missing_library(paced)


# -------------------------------------------------------------------- tests


def test_import_does_not_load_sounddevice() -> None:
    code = (
        "import sys, core.audio.playback\n"
        "print([m for m in ('sounddevice', '_sounddevice') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]"


def test_tone_plays_in_real_time_and_finishes(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    tone = paced["tone"]
    assert tone["playing_after_play"] is True
    assert tone["duration"] == pytest.approx(1.5, abs=1e-3)
    assert 0.3 <= tone["position_after_0.5s"] <= 1.0
    assert tone["finished"] is True
    assert tone["finished_from_main_thread"] is False  # the audio thread calls it
    assert 1.2 <= tone["finished_after_s"] <= 4.0
    assert tone["playing_after_finish"] is False
    assert tone["position_after_finish"] == 0.0
    assert tone["finished_calls"] == 1


def test_stop_halts_and_seek_clamps(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    s = paced["seek"]
    assert 0.1 <= s["before_seek"] <= 0.6
    assert s["after_plus_1"] == pytest.approx(s["before_seek"] + 1.0, abs=0.15)
    assert s["after_minus_5"] < 0.1  # clamped at 0
    assert s["advanced_after_seek"] > s["after_minus_5"]  # still playing after seeking
    assert s["playing_before_stop"] is True
    assert s["playing_after_stop"] is False
    assert s["position_after_stop"] == 0.0
    assert s["position_0.2s_after_stop"] == 0.0
    assert s["finished_after_stop"] is False  # stop() never calls on_finished
    assert s["seek_when_idle_position"] == 0.0
    # seek far past the end: clamped to the duration, which ends playback
    assert s["past_end_finished"] is True
    assert s["past_end_finished_within_s"] < 0.8


def test_play_while_playing_replaces(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    r = paced["replace"]
    assert r["duration_after_replace"] == pytest.approx(0.3, abs=1e-3)
    assert r["position_after_replace"] < 0.25
    assert r["b_finished"] is True
    assert r["a_finished"] is False


def test_start_sec(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    s = paced["start_sec"]
    assert s["first_position"] >= 1.7
    assert s["finished"] is True
    assert 0.2 <= s["finished_after_s"] < 1.0  # only the last 0.3 s of 2 s was played


def test_play_file_44k_and_stereo(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    f44, stereo = paced["file_44k"], paced["file_stereo"]
    assert f44["rate"] == 44100 and f44["channels"] == 1
    assert f44["duration"] == pytest.approx(0.3, abs=1e-3)
    assert f44["finished"] is True and f44["finished_after_s"] >= 0.25
    assert stereo["rate"] == 24000 and stereo["channels"] == 2
    assert stereo["duration"] == pytest.approx(0.3, abs=1e-3)
    assert stereo["finished"] is True and stereo["finished_after_s"] >= 0.25
    assert paced["bad_file_error_type"] == "AudioError"


def test_refused_rate_falls_back_to_device_default(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    fb = paced["fallback"]
    assert fb["stream_rate"] == fb["device_default_rate"] != 24000
    assert fb["duration"] == pytest.approx(0.2, abs=2e-3)  # resampled, same length
    assert fb["finished"] is True


def test_on_finished_may_play_next(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    assert paced["chained_finished"] is True


def test_thread_safe_under_concurrent_calls(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    h = paced["hammer"]
    assert h["errors"] == []
    assert h["alive_threads"] == 0
    assert h["playing_after"] is False
    assert h["plays_after"] is True


def test_dropped_player_and_exit_while_playing(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    assert paced["dropped_finished"] is True
    # the child exited (code 0, checked by run_child) with a stream still playing
    assert paced["_stderr"] == ""


def test_device_selection(paced: dict[str, Any]) -> None:
    if not HAVE_PORTAUDIO:
        return needs_portaudio(paced)
    d = paced["devices"]
    assert d["check_output"] is None
    assert "default" in d["names"] and "paced" in d["names"]
    assert d["env_device"] == "paced"
    assert d["env_device_played"] is True
    assert d["index_device_played"] is True
    assert d["nomatch_check"].startswith("no audio output device: no output device matches")
    assert "PODFORGE_AUDIO_DEVICE" in d["nomatch_check"]
    assert_one_line(d["nomatch_check"])
    assert d["nomatch_play_error_type"] == "PlaybackError"
    assert d["bad_index_error"][0] == "PlaybackError"
    assert "no output device matches 99" in d["bad_index_error"][1]
    assert d["closed_playing"] is False
    assert d["play_after_close"] == "RuntimeError"


def test_null_device_plays_to_the_end(tmp_path: Path) -> None:
    """The plain ALSA null PCM works, but consumes audio far faster than real time."""
    r = run_with_portaudio(tmp_path, "null", NULL_ASOUNDRC)
    if r is None:
        return
    assert r["check_output"] is None
    assert r["finished"] is True
    assert r["playing_after_finish"] is False
    assert r["finished_after_s"] < 1.5  # a 1.5 s tone: not paced by the null PCM


def test_no_output_device(tmp_path: Path) -> None:
    r = run_with_portaudio(tmp_path, "nodevice", NO_DEVICE_ASOUNDRC)
    if r is None:
        return
    assert r["constructed"] is True
    assert r["check_output"].startswith("no audio output device: ")
    assert "PulseAudio/PipeWire" in r["check_output"]
    assert_one_line(r["check_output"])
    for key in ("play", "play_file"):
        assert r[f"{key}_error_type"] == "PlaybackError"
        assert r[f"{key}_error"] == r["check_output"]
    assert r["devices"] == []
    assert r["playing"] is False and r["position"] == 0.0
    assert r["alive"] is True  # the child carried on after the errors


def test_missing_portaudio_library(tmp_path: Path) -> None:
    r = run_child(tmp_path, "noportaudio", NULL_ASOUNDRC)
    assert_missing_library(r)
    assert r["play_error"] == (
        "audio playback needs the PortAudio library: install it "
        "(Debian/Ubuntu: sudo apt install libportaudio2) — see docs/PLAYBACK.md"
    )
    assert r["list_error_type"] == "PlaybackError"
    assert r["original_cause"] == "OSError"


# ----------------------------------------------------------------- child side


def _start_paced_sink(fifo: Path) -> None:
    """Drain ``fifo`` at the real-time byte rate of 48 kHz stereo S16: a fake sound card.

    Must run before sounddevice is imported (PortAudio opens the device when it
    enumerates, and opening a FIFO for writing blocks until it has a reader).
    """
    import fcntl

    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)  # O_RDWR: never blocks, never sees EOF between streams
    fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)  # keep the "hardware buffer" small (~21 ms)
    byte_rate = SINK_RATE * SINK_CHANNELS * SINK_BYTES

    def drain() -> None:
        deadline = time.monotonic()
        while True:
            n = len(os.read(fd, 4096))
            deadline = max(deadline, time.monotonic()) + n / byte_rate
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    threading.Thread(target=drain, daemon=True, name="paced-sink").start()


def _tone(seconds: float, rate: int = 24000, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return mono if channels == 1 else np.repeat(mono[:, None], channels, axis=1)


class _Finish:
    """An ``on_finished`` that records when and from which thread it ran."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.calls = 0
        self.at = 0.0
        self.main_thread = False
        self.t0 = time.monotonic()

    def __call__(self) -> None:
        self.calls += 1
        self.at = time.monotonic() - self.t0
        self.main_thread = threading.current_thread() is threading.main_thread()
        self.event.set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)


def _error(fn: Callable[[], object]) -> tuple[str, str]:
    try:
        fn()
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "", ""


def _play_and_wait(player: Any, play: Callable[[_Finish], None], timeout: float = 3.0) -> Any:
    fin = _Finish()
    play(fin)
    stream = player._stream
    info = {
        "rate": int(stream.samplerate),
        "channels": int(stream.channels),
        "duration": player.duration_sec,
    }
    info["finished"] = fin.wait(timeout)
    info["finished_after_s"] = fin.at
    return info


def child_paced(home: Path) -> dict[str, Any]:
    _start_paced_sink(home / "sink")
    import soundfile as sf

    from core.audio.playback import Player, check_output, list_output_devices

    out: dict[str, Any] = {}
    player = Player()

    # a 1.5 s tone, watched while it plays
    fin = _Finish()
    player.play(_tone(1.5), 24000, on_finished=fin)
    tone: dict[str, Any] = {"playing_after_play": player.playing, "duration": player.duration_sec}
    time.sleep(0.5)
    tone["position_after_0.5s"] = player.position_sec
    tone["finished"] = fin.wait(4.0)
    tone["finished_after_s"] = fin.at
    tone["finished_from_main_thread"] = fin.main_thread
    time.sleep(0.05)
    tone["playing_after_finish"] = player.playing
    tone["position_after_finish"] = player.position_sec
    tone["finished_calls"] = fin.calls
    out["tone"] = tone

    # seek and stop
    fin = _Finish()
    player.play(_tone(4.0), 24000, on_finished=fin)
    time.sleep(0.25)
    seek: dict[str, Any] = {"before_seek": player.position_sec}
    player.seek(+1.0)
    seek["after_plus_1"] = player.position_sec
    player.seek(-5)
    seek["after_minus_5"] = player.position_sec
    time.sleep(0.15)
    seek["advanced_after_seek"] = player.position_sec
    seek["playing_before_stop"] = player.playing
    player.stop()
    seek["playing_after_stop"] = player.playing
    seek["position_after_stop"] = player.position_sec
    time.sleep(0.2)
    seek["position_0.2s_after_stop"] = player.position_sec
    seek["finished_after_stop"] = fin.event.is_set()
    player.seek(2.0)
    seek["seek_when_idle_position"] = player.position_sec
    fin = _Finish()
    player.play(_tone(4.0), 24000, on_finished=fin)
    time.sleep(0.1)
    t = time.monotonic()
    player.seek(100.0)
    seek["past_end_finished"] = fin.wait(3.0)
    seek["past_end_finished_within_s"] = time.monotonic() - t
    out["seek"] = seek

    # play() while playing replaces the audio
    fin_a, fin_b = _Finish(), _Finish()
    player.play(_tone(3.0), 24000, on_finished=fin_a)
    time.sleep(0.15)
    player.play(_tone(0.3), 24000, on_finished=fin_b)
    out["replace"] = {
        "duration_after_replace": player.duration_sec,
        "position_after_replace": player.position_sec,
        "b_finished": fin_b.wait(3.0),
    }
    time.sleep(0.1)
    out["replace"]["a_finished"] = fin_a.event.is_set()

    # start_sec
    fin = _Finish()
    player.play(_tone(2.0), 24000, start_sec=1.7, on_finished=fin)
    out["start_sec"] = {"first_position": player.position_sec, "finished": fin.wait(3.0)}
    out["start_sec"]["finished_after_s"] = fin.at

    # files: 44.1 kHz mono, 24 kHz stereo, and a broken one
    sf.write(home / "a44.wav", _tone(0.3, 44100), 44100)
    sf.write(home / "st.wav", _tone(0.3, 24000, 2), 24000, subtype="PCM_16")
    (home / "bad.wav").write_bytes(b"RIFF-not-really")
    out["file_44k"] = _play_and_wait(
        player, lambda f: player.play_file(home / "a44.wav", on_finished=f)
    )
    out["file_stereo"] = _play_and_wait(
        player, lambda f: player.play_file(home / "st.wav", on_finished=f)
    )
    out["bad_file_error_type"] = _error(lambda: player.play_file(home / "bad.wav"))[0]

    # the device refuses the audio's rate: resampled to its default rate
    import sounddevice as sd

    default_rate = round(sd.query_devices(None, "output")["default_samplerate"])
    real_stream = sd.OutputStream

    def refuse_other_rates(**kw: Any) -> Any:  # as a hw: device does
        if kw.get("samplerate") != default_rate:
            raise sd.PortAudioError("Error opening OutputStream: Invalid sample rate", -9997)
        return real_stream(**kw)

    sd.OutputStream = refuse_other_rates
    fb = _play_and_wait(player, lambda f: player.play(_tone(0.2), 24000, on_finished=f))
    sd.OutputStream = real_stream
    out["fallback"] = {
        "stream_rate": fb["rate"],
        "device_default_rate": default_rate,
        "duration": fb["duration"],
        "finished": fb["finished"],
    }

    # on_finished may start the next audio itself (auto-advance), from the playback thread
    second = _Finish()
    player.play(
        _tone(0.1), 24000, on_finished=lambda: player.play(_tone(0.1), 24000, on_finished=second)
    )
    out["chained_finished"] = second.wait(3.0)

    # hammering from several threads: no deadlock, no crash, consistent state afterwards
    errors: list[str] = []
    stop_at = time.monotonic() + 0.6

    def hammer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while time.monotonic() < stop_at:
            try:
                action = rng.integers(4)
                if action == 0:
                    player.play(
                        _tone(float(rng.uniform(0.05, 0.3))), 24000, on_finished=lambda: None
                    )
                elif action == 1:
                    player.stop()
                elif action == 2:
                    player.seek(float(rng.uniform(-1, 1)))
                else:
                    assert 0.0 <= player.position_sec <= 0.3 + 1e-9  # the longest tone
                time.sleep(float(rng.uniform(0, 0.02)))
            except Exception as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    player.stop()
    out["hammer"] = {
        "errors": errors,
        "alive_threads": sum(t.is_alive() for t in threads),
        "playing_after": player.playing,
        "plays_after": _play_and_wait(
            player, lambda f: player.play(_tone(0.2), 24000, on_finished=f)
        )["finished"],
    }

    # choosing devices: $PODFORGE_AUDIO_DEVICE by name, an index, a name that matches nothing
    devices = list_output_devices()
    d: dict[str, Any] = {"check_output": check_output(), "names": [n for _, n in devices]}
    os.environ["PODFORGE_AUDIO_DEVICE"] = "paced"
    by_env = Player()
    d["env_device"] = by_env.device
    d["env_device_played"] = _play_and_wait(
        by_env, lambda f: by_env.play(_tone(0.1), 24000, on_finished=f)
    )["finished"]
    by_env.close()
    os.environ["PODFORGE_AUDIO_DEVICE"] = "nomatch"
    d["nomatch_check"] = check_output()
    d["nomatch_play_error_type"] = _error(lambda: Player().play(_tone(0.2), 24000))[0]
    del os.environ["PODFORGE_AUDIO_DEVICE"]
    d["bad_index_error"] = _error(lambda: Player(99).play(_tone(0.1), 24000))
    index = next(i for i, n in devices if n == "default")
    by_index = Player(index)
    d["index_device_played"] = _play_and_wait(
        by_index, lambda f: by_index.play(_tone(0.1), 24000, on_finished=f)
    )["finished"]
    by_index.close()
    player.play(_tone(2.0), 24000)
    player.close()

    # a player dropped while playing (no close): plays on to the end, no crash
    dropped = _Finish()
    gone = Player()
    gone.play(_tone(0.3), 24000, on_finished=dropped)
    del gone
    gc.collect()
    out["dropped_finished"] = dropped.wait(3.0)
    gc.collect()

    # and this one is still playing when the process exits: must exit cleanly
    Player().play(_tone(3.0), 24000)
    d["closed_playing"] = player.playing
    d["play_after_close"] = _error(lambda: player.play(_tone(0.2), 24000))[0]
    out["devices"] = d
    return out


def child_null(home: Path) -> dict[str, Any]:
    from core.audio.playback import Player, check_output

    fin = _Finish()
    player = Player()
    result: dict[str, Any] = {"check_output": check_output()}
    player.play(_tone(1.5), 24000, on_finished=fin)
    result["finished"] = fin.wait(5.0)
    result["finished_after_s"] = fin.at
    time.sleep(0.05)
    result["playing_after_finish"] = player.playing
    player.close()
    return result


def child_nodevice(home: Path) -> dict[str, Any]:
    import soundfile as sf

    from core.audio.playback import Player, check_output, list_output_devices

    player = Player()
    result: dict[str, Any] = {"constructed": True, "check_output": check_output()}
    result["play_error_type"], result["play_error"] = _error(lambda: player.play(_tone(0.5), 24000))
    sf.write(home / "t.wav", _tone(0.5), 24000)
    result["play_file_error_type"], result["play_file_error"] = _error(
        lambda: player.play_file(home / "t.wav")
    )
    result["devices"] = list_output_devices()
    result["playing"], result["position"] = player.playing, player.position_sec
    player.close()
    result["alive"] = True
    return result


def child_unavailable(home: Path) -> dict[str, Any]:
    """What every scenario sees without libportaudio2."""
    from core.audio.playback import Player, check_output

    player = Player()
    result: dict[str, Any] = {"constructed": True, "check_output": check_output()}
    result["play_error_type"], result["play_error"] = _error(lambda: player.play(_tone(0.5), 24000))
    return result


def child_noportaudio(home: Path) -> dict[str, Any]:
    real_find = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return None if "portaudio" in name else real_find(name)

    ctypes.util.find_library = find_library  # what sounddevice sees without libportaudio2
    from core.audio.playback import list_output_devices

    result = child_unavailable(home)
    result["list_error_type"] = _error(list_output_devices)[0]
    try:
        from core.audio.playback import _sounddevice

        _sounddevice()
    except Exception as exc:
        result["original_cause"] = type(exc.__cause__).__name__
    return result


if __name__ == "__main__":
    scenario, home_dir = sys.argv[1], Path(sys.argv[2])
    children: dict[str, Callable[[Path], dict[str, Any]]] = {
        "paced": child_paced,
        "null": child_null,
        "nodevice": child_nodevice,
        "unavailable": child_unavailable,
        "noportaudio": child_noportaudio,
    }
    print(json.dumps(children[scenario](home_dir)), flush=True)
