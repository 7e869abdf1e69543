"""The ``--ray`` options of ``podforge ingest`` and ``podforge render`` (core.cluster)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from core.cluster.session import ClusterOptions, ClusterSession

F = TypeVar("F", bound=Callable[..., Any])


RAY_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--ray", "ray_address"), {
        "metavar": "ADDRESS|auto|local", "default": None,
        "help": "Run on Ray (the cluster extra): a head's address, auto (this machine's "
        "cluster) or local (a private instance for this run). See docs/SCALING.md.",
    }),
    (("--ray-cpus",), {
        "type": click.IntRange(1), "default": None,
        "help": "With --ray local: CPUs of the private Ray instance (default: all).",
    }),
    (("--ray-retries",), {
        "type": click.IntRange(0), "default": 2, "show_default": True,
        "help": "With --ray: times a task whose worker died is run again.",
    }),
    (("--threads",), {
        "type": click.IntRange(1), "default": None,
        "help": "Threads of torch, BLAS and CTranslate2 here and in every Ray worker (a Ray "
        "run defaults to 1); equal counts give byte-equal results.",
    }),
    (("--ray-actors",), {
        "type": click.IntRange(1), "default": None,
        "help": "With --ray: actors that hold a model (render: the voice; ingest: ASR, "
        "speaker model) (default: one per GPU share, else per CPU).",
    }),
    (("--ray-actor-gpus",), {
        "type": click.FloatRange(0.0), "default": 0.0, "show_default": True,
        "help": "With --ray: GPUs each actor holds (0: CPU actors).",
    }),
]  # fmt: skip
"""The options of ``ingest`` and ``render``, in the order ``--help`` lists them; the actors
are those that hold a model (render: the voice; ingest: the ASR and speaker models)."""

_NAMES = ("ray_address", "threads", "ray_cpus", "ray_retries", "ray_actors", "ray_actor_gpus")


def ray_options(command: F) -> F:
    """:data:`RAY_OPTIONS` on a command, handed to it as one ``place`` (:class:`RunPlace`)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = [kwargs.pop(name) for name in _NAMES]
        return command(*args, place=run_place(*flags), **kwargs)

    decorated: Any = wrapper
    for decls, options in reversed(RAY_OPTIONS):
        decorated = click.option(*decls, **options)(decorated)
    return cast(F, decorated)


@dataclass(frozen=True)
class RunPlace:
    """Where a run's work goes: ``cluster`` (``None``: here), with ``threads`` pinned."""

    cluster: ClusterOptions | None
    threads: int | None


def run_place(
    ray_address: str | None,
    threads: int | None,
    ray_cpus: int | None,
    ray_retries: int,
    ray_actors: int | None,
    ray_actor_gpus: float,
) -> RunPlace:
    """What the flags ask for."""
    if ray_address is None:
        return RunPlace(None, threads)
    from core.cluster.session import ClusterOptions

    options = ClusterOptions(
        address=ray_address, cpus=ray_cpus, threads=threads or 1, retries=ray_retries,
        actors=ray_actors, actor_gpus=ray_actor_gpus,
    )  # fmt: skip
    return RunPlace(options, options.threads)


@contextlib.contextmanager
def session(place: RunPlace) -> Iterator[ClusterSession | None]:
    """A Ray session for ``place`` (after the security reminder), or ``None`` for a local
    run (its threads pinned when ``--threads`` says so)."""
    options = place.cluster
    if options is None:
        if place.threads is None:
            yield None
            return
        from core.cluster.threads import pinned_threads

        with pinned_threads(place.threads):
            yield None
        return
    from core.cluster.session import ray_session, reminder

    note = reminder(options.address)
    if note:
        click.echo(f"podforge: note: {note}", err=True)
    with ray_session(options) as opened:
        yield opened
