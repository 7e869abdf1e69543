"""The training worker process: ``python -m core.training.worker WORKSPACE RUN_DIR``.

Started detached by :func:`core.training.runs.launch_worker` (its output is ``worker.log``)
or in the foreground by ``podforge train --foreground`` (:func:`run_foreground`: the
terminal and ``worker.log``). It records its pid in ``status.json``, turns SIGTERM into
a clean stop (checkpoint, state ``stopped``), and ends every failure with a ``failed``
status and a one-line reason (missing model, no GPU, out of memory, no data), never a
silent death. The traceback of an unexpected error goes to ``worker.log`` only.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from core.errors import PodforgeError
from core.training.protocol import update_status

log = logging.getLogger("podforge.worker")


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self, *_: object) -> None:
        self._event.set()


def run(workspace_root: Path, run_dir: Path) -> int:
    """Run the training described by ``run_dir/config.toml``; returns the exit status."""
    from core.training.runs import RunConfig
    from core.workspace import Workspace

    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, stop.set)
    update_status(run_dir, pid=os.getpid(), state="starting", error=None)
    try:
        ws = Workspace.open(workspace_root)
        config = RunConfig.load(run_dir)
        from core.training.loop import train

        final = train(ws, run_dir, config, should_stop=stop)
    except PodforgeError as exc:
        log.error("%s", exc)
        update_status(run_dir, state="failed", error=str(exc))
        return 1
    except Exception as exc:  # a bug or the machine: still a clear status, never silence
        message = _explain(exc)
        log.error("%s\n%s", message, traceback.format_exc())
        update_status(run_dir, state="failed", error=message)
        return 1
    update_status(run_dir, state=final)
    return 0


def _explain(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    if "out of memory" in text.lower():
        return (
            f"out of GPU memory ({text[:120]}); lower training.batch_size (and raise "
            "training.grad_accum to keep the effective batch), or use a larger GPU"
        )
    return f"unexpected error: {exc.__class__.__name__}: {text[:200]} (see worker.log)"


LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def run_foreground(workspace_root: Path, run_dir: Path) -> int:
    """:func:`run` in this process, logging to this terminal and to ``worker.log`` (appended,
    as a detached worker does), so the dashboard and ``l`` show the run either way."""
    from core.training.protocol import LOG_NAME

    handler = logging.FileHandler(run_dir / LOG_NAME, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout, force=True)
    logging.getLogger().addHandler(handler)
    try:
        return run(workspace_root, run_dir)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m core.training.worker WORKSPACE RUN_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout)
    return run(Path(args[0]), Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())
