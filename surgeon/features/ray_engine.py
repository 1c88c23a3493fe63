"""``--engine ray``: the shards of a features run computed by a pool of Ray Data actors.

The driver (the ``surgeon features`` process) plans the shards and owns the manifest; Ray Data
runs ``ShardWorker`` actors, each of which loads the base once, checks that the file it loaded is
the one the run was planned with (SHA-256), and writes whole shards into the output directory with
the same code as the single-process path (``compute.write_shard``). A worker sends back only the
shard's record; the driver records it, so the manifest has one writer.

Without ``address`` a local Ray instance is started for the run and stopped after it; with one,
the run joins that cluster. There, the base, the data and the output directory must be at paths
every node sees (a shared file system), and surgeon must be installed on every node.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import warnings
from typing import Iterator

from surgeon.errors import SurgeonError, one_line

INSTALL_HINT = "the Ray engine needs Ray Data: pip install 'surgeon[ray]'"


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise SurgeonError(INSTALL_HINT) from None
    return ray


class ShardWorker:
    """One Ray actor: the base loaded once, then any number of shards."""

    def __init__(self, base_path: str, base_sha256: str, batch_size: int, directory: str, keys: list[str], allow_code: bool,
                 threads: int = 1):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # TensorFlow sizes its thread pool to the whole node, not to the CPUs Ray gave this actor:
        # sixteen actors on a 16-core node would run 256 compute threads. Read at its import.
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        from surgeon.features.store import file_sha256
        from surgeon.io.loading import load_checked

        self.batch_size, self.directory, self.keys = batch_size, directory, keys
        self.error = None
        self.model = None
        try:
            if file_sha256(base_path) != base_sha256:
                self.error = f"the base '{base_path}' on worker {socket.gethostname()} is not the file the run started with (SHA-256 differs); every node needs the same file"
            else:
                self.model = load_checked(base_path, allow_code=allow_code)
        except Exception as error:  # reported per shard below, as a one-line message
            self.error = _one_line(error, f"worker {socket.gethostname()} cannot load the base '{base_path}'")

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from surgeon.features.compute import write_shard

        records = []
        for text in batch["shard"]:
            shard = json.loads(str(text))
            if self.error:
                record = {"index": shard["index"], "error": self.error}
            else:
                try:
                    record = write_shard(self.model, shard["task"], self.batch_size, self.directory, shard["index"],
                                         shard["start"], shard["stop"], self.keys)
                except Exception as error:  # a bad file in the data: the driver stops the run with this line
                    record = {"index": shard["index"], "error": _one_line(error, f"shard {shard['index']}")}
            records.append(json.dumps(record))
        return {"record": np.array(records, dtype=object)}


def _one_line(error: Exception, context: str) -> str:
    if isinstance(error, SurgeonError):
        return str(error)
    return f"{context}: {type(error).__name__}: {one_line(error)}"


@contextlib.contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[int]:
    """Join ``address`` or start a local Ray instance for the body; stop it after if started here.

    Yields the CPUs each worker gets: a local instance started here divides this machine's CPUs
    among the workers (one worker on 2 cores computes as fast as one process); on a cluster
    (or an instance a caller started) each worker takes one CPU, and more workers fill it.
    """
    ray = import_ray()
    started_here = _connect(ray, address, workers)
    try:
        yield max(1, machine_cpus() // workers) if started_here and not address else 1
    finally:
        if started_here:
            ray.shutdown()


def run_on_ray(shards: list[dict], *, base_path: str, base_sha256: str, batch_size: int, directory: str, keys: list[str],
               workers: int, cpus_per_worker: int, allow_code: bool) -> Iterator[dict]:
    """Yield each shard's record as its worker finishes it (in any order); inside ``ray_session``."""
    ray = import_ray()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # surgeon shows its own
    context.print_on_execution_start = False
    context.execution_options.preserve_order = False  # record shards as they finish
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled": we said so
    dataset = ray.data.from_items([{"shard": json.dumps(shard)} for shard in shards], override_num_blocks=len(shards))
    with warnings.catch_warnings():
        # max_restarts=0 (Ray's documented way, passed through its deprecated **ray_remote_args):
        # a worker that dies fails the run, which resumes from the manifest when run again, and
        # Ray does not warn on every run that restarting its actors might fail.
        warnings.simplefilter("ignore", DeprecationWarning)
        results = dataset.map_batches(
            ShardWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
            max_restarts=0,
            fn_constructor_kwargs={"base_path": base_path, "base_sha256": base_sha256, "batch_size": batch_size,
                                   "directory": directory, "keys": keys, "allow_code": allow_code, "threads": cpus_per_worker},
        )
    for row in results.iter_rows():
        record = json.loads(str(row["record"]))
        if "error" in record:
            raise SurgeonError(record["error"])
        yield record


def _connect(ray, address: str | None, workers: int) -> bool:
    """Join ``address``, or start a small local instance; True if this call started Ray."""
    if ray.is_initialized():
        return False  # a caller (a test session, a notebook) already chose the cluster
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": False}
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(logging.ERROR)  # Ray's start-up notes (token authentication) are not for this command's users
    try:
        if address:
            try:
                ray.init(address=address, **options)
            except Exception as error:
                raise SurgeonError(f"cannot join the Ray cluster at '{address}': {one_line(error, limit=200)}; check the address (`ray status` on the head node)") from None
        else:
            # At least one CPU per worker; the object store carries only shard records.
            ray.init(num_cpus=max(workers, machine_cpus()), object_store_memory=256 * 2**20, **options)
    finally:
        logger.setLevel(level)
    return True


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity, not the whole machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_reachable(address: str) -> None:
    """Fail fast on a host:port nobody listens on (ray.init would retry for a minute)."""
    if address == "auto":
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise SurgeonError(f"'{address}' is not a Ray address; give HOST:PORT of the head node (e.g. 10.0.0.5:6379), ray://HOST:10001 or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise SurgeonError(f"cannot reach the Ray cluster at '{address}': {error.strerror or error}; is the head node running (`ray start --head`)?") from None
