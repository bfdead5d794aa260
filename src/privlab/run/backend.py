"""Where a study's independent units of work run: in this process (``local``) or as tasks on a
Ray cluster (``ray``, the optional extra: ``make ray``).

A study hands :meth:`Backend.map` a module-level function and the items to call it on; large
read-only inputs go in ``shared`` (sent once per node by Ray's object store, not with every
task). Results come back to the driver as they finish, with their item's index, so that the
driver writes each one (a shard, a ``state/`` entry) the moment it exists: a run killed in
the middle resumes from what was written, on either backend, and no shared filesystem is
needed.

The same function on the same item gives the same result on either backend (a task runs with
the thread count its resources ask for, one by default, as the local backend's units do where
they run one thread each). Faults: a task whose worker process dies is run again (Ray's
``max_retries``), from scratch, so its result is the one it would have had; an exception the
function raises is re-raised in the driver as itself (a ``ValueError`` stays a
``ValueError``, with its message), not as a Ray traceback.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Literal, Protocol, TypeVar

import torch

R = TypeVar("R")

BACKENDS = ("local", "ray")
INSTALL_RAY = (
    "backend 'ray' needs Ray, an optional extra: run `make ray` (or pip install 'privlab[ray]')"
)


class BackendError(RuntimeError):
    """The backend itself failed (a worker died more often than retries allow, a cluster that
    cannot be reached), as opposed to an error of the work it ran."""


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one task asks for: CPUs (also its torch thread count) and a GPU share (0.25: four
    tasks per GPU). GPUs are asked for only where the cluster has some; elsewhere the task
    runs on CPU (:func:`task_device`)."""

    cpus: float = 1.0
    gpus: float = 0.0


#: one CPU, no GPU: what a unit asks for unless it says otherwise
ONE_CPU = Resources()


class Backend(Protocol):
    name: str
    #: units run in other processes (on other machines): the study hands them over as tasks
    #: up front; on a local backend it runs them where its sequential code meets them
    remote: bool

    def map(
        self,
        fn: Callable[..., R],
        items: Sequence[Any],
        *,
        shared: Mapping[str, Any] | None = None,
        resources: Resources = ONE_CPU,
    ) -> Iterator[tuple[int, R]]:
        """``(i, fn(items[i], **shared))`` for every item, in the order they finish."""
        ...

    def inner(self) -> Backend:
        """The backend for the units of a unit that runs as a task: on Ray the same cluster
        (nested tasks; a task waiting on them gives its CPUs back), locally this process."""
        ...


def task_device(resources: Resources) -> torch.device:
    """The device a task should use: a GPU it was given (CUDA visible and a GPU share asked
    for), else the CPU."""
    if resources.gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class LocalBackend:
    """The units in this process: one after another (``workers`` 1, the default), or in
    ``workers`` threads of one torch thread each, as a Ray task runs (so the two backends
    compute alike; None: torch's thread count). Threads only for units that draw no random
    numbers from torch's global generator, which threads share (a study knows its units)."""

    name = "local"
    remote = False

    def __init__(self, workers: int | None = 1) -> None:
        self.workers = workers

    def inner(self) -> LocalBackend:
        return LocalBackend()

    def map(
        self,
        fn: Callable[..., R],
        items: Sequence[Any],
        *,
        shared: Mapping[str, Any] | None = None,
        resources: Resources = ONE_CPU,
    ) -> Iterator[tuple[int, R]]:
        kwargs = dict(shared or {})
        workers = min(self.workers or torch.get_num_threads(), len(items))
        if workers <= 1:
            for i, item in enumerate(items):
                yield i, fn(item, **kwargs)
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, int(resources.cpus)))
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(fn, item, **kwargs): i for i, item in enumerate(items)}
                for future in as_completed(futures):
                    yield futures[future], future.result()
        finally:
            torch.set_num_threads(threads)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_RAY) from None
    return ray


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A BackendError unless something listens at ``address`` (``host:port``)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except ValueError:
        raise BackendError(f"a Ray address is host:port, got {address!r}") from None
    except OSError as err:
        raise BackendError(f"cannot reach a Ray cluster at {address}: {err}") from None


def _in_task(fn: Callable[..., R], item: Any, threads: int, **shared: Any) -> R:
    """A task's body: the torch thread count its resources ask for, then the work."""
    torch.set_num_threads(threads)
    return fn(item, **shared)


class RayBackend:
    """Tasks on a Ray cluster: the one at ``address`` (``auto``: the running one), an already
    initialised Ray as it is, or else a new local one with ``workers`` CPUs. At most twice as
    many tasks as the cluster has CPUs are in flight, so the driver's memory stays bounded."""

    name = "ray"
    remote = True

    def __init__(
        self, address: str | None = None, workers: int | None = None, max_retries: int = 3
    ) -> None:
        self.ray = _import_ray()
        self.max_retries = max_retries
        if not self.ray.is_initialized():
            if address and address != "auto":
                _check_reachable(address)  # Ray itself retries an absent cluster for minutes
            try:
                self.ray.init(
                    address=address,
                    num_cpus=None if address else workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"at {address}" if address else "locally"
                raise BackendError(f"cannot start or reach a Ray cluster {where}: {err}") from None

    def inner(self) -> RayBackend:
        return self  # inside a task Ray is already initialised: its tasks are nested ones

    def _gpus(self, resources: Resources) -> float:
        return resources.gpus if self.ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def map(
        self,
        fn: Callable[..., R],
        items: Sequence[Any],
        *,
        shared: Mapping[str, Any] | None = None,
        resources: Resources = ONE_CPU,
    ) -> Iterator[tuple[int, R]]:
        ray = self.ray
        task = ray.remote(_in_task).options(
            num_cpus=resources.cpus,
            num_gpus=self._gpus(resources),
            max_retries=self.max_retries,
            retry_exceptions=False,  # only a dead worker is retried; a real error fails the run
        )
        refs = {k: ray.put(v) for k, v in (shared or {}).items()}  # once, not per task
        threads = max(1, int(resources.cpus))
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        queue, pending = list(range(len(items))), dict[Any, int]()
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    i = queue.pop(0)
                    pending[task.remote(fn, items[i], threads, **refs)] = i
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    yield i, self._result(ref)
        finally:
            for ref in pending:  # the driver stopped early (an error, an interrupt)
                ray.cancel(ref, force=True)

    def _result(self, ref: Any) -> Any:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(getattr(err, "cause", None), BaseException) else None
            if cause is not None:
                raise cause from None
            raise BackendError(f"a Ray task failed: {err}") from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as err:
            raise BackendError(
                f"a Ray worker died {self.max_retries + 1} times on one task: {type(err).__name__}"
            ) from None


def make_backend(
    name: Literal["local", "ray"] | str, address: str | None = None, workers: int | None = None
) -> Backend:
    """The backend called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        if address:
            raise ValueError("an address needs backend 'ray'")
        return LocalBackend(workers or 1)
    if name == "ray":
        return RayBackend(address=address, workers=workers)
    raise ValueError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
