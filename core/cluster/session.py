"""Connect to a Ray cluster, or start a private one for a run, and always let go of it.

``local`` starts a multi-process Ray instance on this machine for the run (its own head,
workers and object store, no dashboard) and shuts it down when the run ends, however it
ends; ``auto`` joins the cluster this machine is part of (``ray start``); anything else is
a head's address. Ray's cluster has no authentication (CVE-2023-48022): :func:`reminder`
is the one line to show before joining one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core.cluster.threads import pinned_threads, worker_env
from core.errors import ClusterError, one_line

LOCAL = "local"
"""The ``--ray`` value that starts a private instance on this machine for the run."""

INSTALL_HINT = "install the cluster extra: uv sync --extra cluster (pip: podforge[cluster])"


@dataclass(frozen=True)
class ClusterOptions:
    """Where a run's Ray work goes and how it is shaped."""

    address: str = LOCAL  # local | auto | a head's address (host:6379)
    cpus: int | None = None  # local: the private instance's CPUs (default: all of them)
    gpus: int | None = None  # local: its GPUs (default: those Ray finds)
    threads: int = 1  # threads of each task and actor (and of the driver, pinned alike)
    retries: int = 2  # a task whose worker dies is run again this many times
    actors: int | None = None  # render: how many actors (default: one per GPU share, or CPU)
    actor_gpus: float = 0.0  # render: GPUs each actor holds (0: CPU actors)


@dataclass
class ClusterSession:
    """A connected Ray session: what :mod:`core.cluster.ingest` and ``.render`` run on."""

    options: ClusterOptions
    ray: Any  # the ray module, imported when the session starts
    started_here: bool

    def resources(self) -> dict[str, float]:
        """The cluster's total resources (``CPU``, ``GPU``, ...)."""
        return {k: float(v) for k, v in self.ray.cluster_resources().items()}


def reminder(address: str) -> str | None:
    """The one-line security reminder for joining ``address`` (``None`` for ``local``)."""
    if address == LOCAL:
        return None
    return (
        "Ray clusters have no authentication (CVE-2023-48022): keep the cluster's ports on a "
        "private network or behind SSH (docs/SCALING.md)"
    )


RAY_ENVIRONMENT = {
    # Workers run this interpreter (this podforge), not `uv run` in a copy of the working
    # folder, which Ray does by default for a driver started with `uv run`.
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report sent anywhere
}
"""Ray settings read from the environment when ray is first imported."""


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ClusterError saying how to install it."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import ray
        from ray._private import ray_constants
    except ImportError as exc:
        raise ClusterError(f"Ray is not installed ({one_line(exc)}); {INSTALL_HINT}") from exc
    # ray imported earlier (before the environment above) read the setting already.
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = os.environ[
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV"
    ] not in ("0", "false", "False")
    return ray


@contextlib.contextmanager
def ray_session(options: ClusterOptions) -> Iterator[ClusterSession]:
    """Connect (or start a private instance) for the ``with`` block, then disconnect; a
    private instance is shut down with all its processes, also on an error or Ctrl-C."""
    ray = import_ray()
    if ray.is_initialized():
        raise ClusterError("a Ray session is open in this process already; end it first")
    common: dict[str, Any] = {
        "runtime_env": {"env_vars": worker_env(options.threads)},
        "log_to_driver": False,
        "namespace": "podforge",
    }
    local = options.address == LOCAL
    try:
        if local:
            ray.init(
                num_cpus=options.cpus or os.cpu_count() or 1,
                num_gpus=options.gpus,
                include_dashboard=False,
                **common,
            )
        else:
            ray.init(address=options.address, **common)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        with contextlib.suppress(Exception):
            ray.shutdown()
        where = "start a local Ray instance" if local else f"reach Ray at {options.address}"
        raise ClusterError(
            f"cannot {where} ({one_line(exc, first_line=True)}); check `ray status` there "
            "(docs/SCALING.md)"
        ) from exc
    try:
        with pinned_threads(options.threads):  # the driver's own work, as each worker's
            yield ClusterSession(options=options, ray=ray, started_here=local)
    finally:
        ray.shutdown()
