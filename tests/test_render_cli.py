"""``podforge render`` with a model, as a user runs it: a clear stage line, no library noise.

The model libraries (transformers, peft) print deprecation warnings and weight-loading
progress bars while a CSM model loads; a render sends the warnings to
``<workspace>/.tmp/render.log``, switches the progress bars off and shows the user
"loading model …" instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.workspace import Workspace
from tests.conftest import make_tiny_voice

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a podforge process that imports PyTorch and loads the tiny CSM
def test_render_shows_loading_model_and_sends_library_noise_to_the_render_log(
    workspace: Workspace,
) -> None:
    workspace.settings.models.tts = "tiny"
    workspace.save()
    make_tiny_voice(workspace, "alice", seed=4)  # alice has a consent record (the fixture)
    script = workspace.scripts_dir / "hello.md"
    script.write_text('+++\ntitle = "Hello"\n[speakers]\nA = "alice"\n+++\nA: Hello there.\n')
    out = subprocess.run(
        [str(Path(sys.executable).with_name("podforge")), "render", str(workspace.root),
         "scripts/hello.md"], capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    terminal = out.stdout + out.stderr
    assert out.returncode == 0, terminal
    assert "loading model" in terminal
    assert "FutureWarning" not in terminal and "Loading weights" not in terminal, terminal
    assert (workspace.episodes_dir / "hello" / "hello.mp3").is_file()
    log = (workspace.root / ".tmp" / "render.log").read_text(encoding="utf-8")
    # The warning happened (so the check above can fail) and landed in the log; the
    # weight-loading progress bars are switched off while the model loads.
    assert "FutureWarning" in log, log
