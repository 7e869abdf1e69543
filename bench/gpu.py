"""Every GPU figure in one command, within about five minutes, saved as it is taken.

Runs, each in its own process with a time limit: the synthesis bench (``bench/synthesis.py
--full --compiled``: stock ``generate`` against our engine, eager and compiled, one line
and batched, with adapters, and the compiled path's teacher-forced logits check) and
the training-step bench (``bench/train_step.py``: step time and peak VRAM at LoRA r=16,
batch 2, 10 s clips, depth-decoder share 1/16 and 1). Each result line is parsed and the
JSON file is rewritten after every figure, so a run cut off still reports what it measured.
Imports only what the model code needs (torch, transformers, peft, numpy): no soundfile,
no Textual. Without a GPU it runs on the CPU (``--tiny`` for a quick check of the plumbing).

    uv run python bench/gpu.py [--out gpu.json] [--budget 300] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess  # nosec B404  # runs this repository's own benches with fixed arguments
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYNTH = re.compile(
    r"^(?P<label>.+?)\s+(?P<frames>\d+) frames in\s+(?P<seconds>[\d.]+) s:\s+"
    r"(?P<fps>[\d.]+) frames/s, RTF\s+(?P<rtf>[\d.]+),\s+(?P<ratio>[\d.]+)x stock$"
)
STEP = re.compile(
    r"^depth_decoder_ratio (?P<ratio>\S+)\s+step\s+(?P<seconds>[\d.]+) s.*"
    r"peak (?P<what>.+?) (?P<gb>[\d.]+) GB$"
)


def run(command: list[str], seconds: float, on_line: Callable[[str], None]) -> str:
    """Run ``command``, feeding each output line to ``on_line``; stop it after ``seconds``."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(  # nosec B603  # fixed argv: sys.executable and a bench of this repo
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        deadline = time.monotonic() + seconds
        assert proc.stdout is not None  # nosec B101  # stdout=PIPE above
        for line in proc.stdout:
            print(line, end="", flush=True)
            on_line(line.rstrip("\n"))
            if time.monotonic() > deadline:
                proc.kill()
                return "cut off at the time limit"
        proc.wait()
        return "done" if proc.returncode == 0 else f"exit {proc.returncode}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--budget", type=float, default=300.0, help="seconds in all")
    parser.add_argument("--tiny", action="store_true", help="the tiny model: plumbing check")
    args = parser.parse_args()
    report: dict[str, object] = {"synthesis": [], "train_step": [], "runs": {}}
    started = time.monotonic()

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    def collect(key: str, pattern: re.Pattern[str]) -> Callable[[str], None]:
        """A line handler: the model line and each figure under ``key``, saved at once."""

        def on_line(line: str) -> None:
            if line.startswith("model "):
                report[f"{key}_model"] = line
            elif line.startswith(("teacher-forced logits", "compiled engine unavailable")):
                report[f"{key}_logits_check"] = line
            elif match := pattern.match(line):
                report[key].append(match.groupdict())  # type: ignore[attr-defined]
            save()

        return on_line

    size = [] if args.tiny else ["--full"]
    frames = ["--frames", "8"] if args.tiny else ["--frames", "50", "--repeats", "2"]
    synth = [sys.executable, str(HERE / "synthesis.py"), *size, *frames, "--compiled"]
    runs: dict[str, str] = report["runs"]  # type: ignore[assignment]
    runs["synthesis"] = run(synth, args.budget * 0.55, collect("synthesis", SYNTH))
    save()
    left = max(30.0, args.budget - (time.monotonic() - started))
    step = [sys.executable, str(HERE / "train_step.py"), "--ratios", "0.0625,1.0"]
    if args.tiny:
        step += ["--tiny", "--seconds", "1", "--batch", "1"]
    runs["train_step"] = run(step, left, collect("train_step", STEP))
    report["seconds"] = round(time.monotonic() - started, 1)
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
