"""``features``: run a (frozen, mode-independent) base over a dataset and write its outputs.

The features are exactly what the top sees when the base written by ``surgeon split`` is composed
with it and fine-tuned: the base has no Dropout/noise layers and frozen BatchNormalization, so its
output in training mode equals its output in inference mode, which is what is computed here.

Two layouts: one ``.npy`` (``.npz`` for several base outputs), or a directory of shards with a
manifest (``store.py``) that resumes when interrupted. Two engines write the directory: this
process, shard after shard, or a pool of Ray workers (``ray_engine.py``); both run the same code
per shard, so their files are the same bytes. Memory stays bounded for data larger than RAM:
``.npy`` inputs are memory-mapped, uncompressed ``.npz`` members too, images are decoded batch by
batch, and outputs are written batch by batch into memory-mapped ``.npy`` files.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
import zipfile

from surgeon.errors import SurgeonError, one_line
from surgeon.features.compute import run_model, write_shard
from surgeon.features.data import open_data, read_batches
from surgeon.features.store import file_sha256, open_store
from surgeon.io.loading import load_checked
from surgeon.io.output import check_target, pending_outputs
from surgeon.passes.split import feature_keys

ENGINES = ("local", "ray")
DEFAULT_SHARD_SIZE = 4096


@dataclasses.dataclass
class FeaturesResult:
    base: str
    data: str
    output: str
    labels: str | None  # the labels file, for an image folder written as one file
    count: int
    features: dict[str, list[int]]  # output key -> array shape
    class_names: list[str] | None
    preprocessing: str | None
    seconds: float
    engine: str = "local"
    workers: int = 1
    layout: str = "file"  # or "directory" (shards + manifest)
    shards: int = 1
    shards_resumed: int = 0  # already done by an earlier, interrupted run
    computed: int = 0  # samples computed by this run
    first_shard_seconds: float | None = None  # start-up + one shard: what a run costs before its steady rate

    @property
    def samples_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["samples_per_second"] = self.samples_per_second
        return data


def extract_features(base, data: str, output: str, *, batch_size: int = 32, force: bool = False,
                     progress: bool = True, allow_code: bool = False, engine: str = "local", workers: int = 2,
                     address: str | None = None, shard_size: int = DEFAULT_SHARD_SIZE) -> FeaturesResult:
    """Write ``base``'s inference outputs over ``data`` to ``output``, in input order.

    ``base`` is a model file or a ``keras.Model``; ``data`` an .npy/.npz file, a folder of .npy
    shards (sorted by name) or a folder of images with one sub-folder per class. ``output`` is
    an .npy (.npz for several base outputs; labels of images go to ``<stem>_labels.npy``), or a
    directory of shards (a name ending in ``/``, an existing directory, or any name with
    ``engine="ray"``), read back with ``surgeon.open_features``. A directory run that was
    interrupted resumes: shards its manifest records are not computed again.

    ``engine="ray"`` computes the shards on ``workers`` Ray actors: a local Ray instance, or the
    cluster at ``address``.

    Example:
        >>> result = extract_features("model_base.keras", "images.npy", "features.npy")
        >>> np.load("features.npy").shape
        (1000, 16)
    """
    if batch_size < 1:
        raise SurgeonError(f"--batch-size must be at least 1, not {batch_size}")
    if engine not in ENGINES:
        raise SurgeonError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    if workers < 1 or shard_size < 1:
        raise SurgeonError("--workers and --shard-size must be at least 1")
    directory = _is_directory_output(str(output), engine)
    named_files = tuple(str(p) for p in (data, base) if isinstance(p, (str, os.PathLike)))
    if engine == "ray":
        from surgeon.features.ray_engine import check_reachable, import_ray

        import_ray()  # before anything slow: a missing extra or a wrong address is one line
        if address:
            check_reachable(address)
        if not isinstance(base, (str, os.PathLike)):
            raise SurgeonError("the Ray engine loads the base from its file in each worker: give a path, not a keras.Model")
    elif address:
        raise SurgeonError("--address is for --engine ray")
    if not directory:
        _check_output(str(output), force, named_files)  # before loading TensorFlow
    with _base_and_engine(base, allow_code, engine, address, workers) as (model, base_name, cpus_per_worker):
        keys = _output_keys(model)
        if not directory:
            _check_output_fits(str(output), keys)
        source = open_data(str(data), model)
        if directory:
            return _extract_to_directory(model, base, base_name, source, str(output), keys, batch_size=batch_size, force=force,
                                         progress=progress, allow_code=allow_code, engine=engine, workers=workers,
                                         cpus_per_worker=cpus_per_worker, shard_size=shard_size, named_files=named_files)
        output = str(output)
        labels_path = os.path.splitext(output)[0] + "_labels.npy" if source.labels is not None else None
        if labels_path:
            _check_output(labels_path, force, named_files)
        targets = [output] + ([labels_path] if labels_path else [])
        started = time.perf_counter()
        with pending_outputs(targets) as pending, tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(output))) as scratch, \
                _progress(progress, source.count) as bar:
            # One memory-mapped .npy per base output; several are zipped (uncompressed) into the .npz.
            paths = [pending.path(output)] if output.endswith(".npy") else [os.path.join(scratch, f"{key}.npy") for key in keys]
            task = bar.add_task("features", total=source.count)
            shapes, _ = run_model(model, read_batches(source.task(0, source.count), batch_size), source.count, paths,
                                  pending.path(labels_path) if labels_path else None, lambda size: bar.update(task, advance=size))
            if output.endswith(".npz"):
                with zipfile.ZipFile(pending.path(output), "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                    for key, path in zip(keys, paths):
                        archive.write(path, arcname=f"{key}.npy")
            pending.commit()
        seconds = time.perf_counter() - started
        return FeaturesResult(base_name, str(data), output, labels_path, source.count, dict(zip(keys, shapes)),
                              source.class_names, source.preprocessing, seconds, computed=source.count)


def _extract_to_directory(model, base, base_name: str, source, output: str, keys: list[str], *, batch_size: int, force: bool,
                          progress: bool, allow_code: bool, engine: str, workers: int, cpus_per_worker: int, shard_size: int,
                          named_files: tuple[str, ...]) -> FeaturesResult:
    # Shards hold whole batches, so every engine feeds the base the batches one process would.
    shard_size = -(-shard_size // batch_size) * batch_size
    base_sha256 = file_sha256(str(base)) if isinstance(base, (str, os.PathLike)) else _model_sha256(model)
    sources = source.sources()
    plan = {
        "base": {"path": base_name, "sha256": base_sha256},
        "data_path": source.path,
        "data": {"kind": source.kind, "count": source.count, "inputs": source.input_dtypes,
                 "fingerprint": hashlib.sha256(json.dumps(sources).encode()).hexdigest()},
        "batch_size": batch_size, "shard_size": shard_size, "keys": keys,
        "class_names": source.class_names, "preprocessing": source.preprocessing,
    }
    store = open_store(output, plan=plan, sources=sources, force=force, inputs=named_files)
    pending = store.pending()
    remaining = sum(shard.stop - shard.start for shard in pending)
    started, first_shard = time.perf_counter(), None
    with _progress(progress, source.count) as bar:
        task = bar.add_task("features", total=source.count, completed=source.count - remaining)
        if engine == "local":
            for shard in pending:
                store.record(write_shard(model, source.task(shard.start, shard.stop), batch_size, store.directory, shard.index,
                                         shard.start, shard.stop, keys, lambda size: bar.update(task, advance=size)))
                first_shard = first_shard or time.perf_counter() - started
        elif pending:
            from surgeon.features.ray_engine import run_on_ray

            shards = [{"index": s.index, "start": s.start, "stop": s.stop, "task": source.task(s.start, s.stop)} for s in pending]
            # Ray's start and each worker's TensorFlow import take seconds before the first shard: say so.
            bar.update(task, description="features (starting Ray workers)")
            for record in run_on_ray(shards, base_path=os.path.abspath(str(base)), base_sha256=base_sha256, batch_size=batch_size,
                                     directory=store.directory, keys=keys, workers=workers, cpus_per_worker=cpus_per_worker,
                                     allow_code=allow_code):
                bar.update(task, advance=record["stop"] - record["start"], description="features")
                store.record(record)
                first_shard = first_shard or time.perf_counter() - started
    seconds = time.perf_counter() - started
    features = {key: value["shape"] for key, value in (store.manifest["features"] or {}).items()}
    return FeaturesResult(base_name, source.path, output, None, source.count, features, source.class_names, source.preprocessing,
                          seconds, engine=engine, workers=workers if engine == "ray" else 1, layout="directory",
                          shards=len(store.shards), shards_resumed=len(store.shards) - len(pending), computed=remaining,
                          first_shard_seconds=first_shard)


def _is_directory_output(output: str, engine: str) -> bool:
    if output.endswith(("/", os.sep)) or os.path.isdir(output):
        return True
    if os.path.splitext(output)[1].lower() in (".npy", ".npz"):
        if engine == "ray":
            raise SurgeonError(f"the Ray engine writes a directory of shards, not '{output}': give -o a directory name (e.g. features/)")
        return False
    if engine == "ray" and not os.path.splitext(output)[1]:
        return True
    raise SurgeonError(f"cannot tell the output format of '{output}': name it .npy (one output), .npz, or end it with / for a directory of shards")


def _model_sha256(model) -> str:
    """An in-memory base has no file: hash its config and weights, which is what a file would hold."""
    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()


# --- the base ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _base_and_engine(base, allow_code: bool, engine: str, address: str | None, workers: int):
    """``(model, base name, CPUs per Ray worker)``: the base loaded; with the Ray engine, Ray
    started (or joined) for the body meanwhile (``ray_session``; 0 CPUs for the local engine).

    ray.init wants the main thread, TensorFlow's import does not: the two start-ups (3-6 s each on
    2 cores) overlap instead of adding up.
    """
    if engine != "ray":
        yield (*_load_base(base, allow_code), 0)
        return
    from surgeon.features.ray_engine import ray_session

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(_load_base, base, allow_code)
        with ray_session(address, workers) as cpus_per_worker:
            yield (*loading.result(), cpus_per_worker)


def _load_base(base, allow_code: bool):
    if isinstance(base, (str, os.PathLike)):
        try:
            return load_checked(str(base), allow_code=allow_code), str(base)
        except SurgeonError:
            raise
        except Exception as error:
            raise SurgeonError(f"Keras cannot load the base '{base}': {one_line(error)}") from None
    return base, getattr(base, "name", "model")


def _input_names(model) -> list[str]:
    return [tensor._keras_history[0].name for tensor in model.inputs]


def _output_keys(model) -> list[str]:
    # The same keys `split` gives the top's inputs, so that top.fit(dict(np.load(out)), y) works.
    return feature_keys(list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))]))


def _check_output(path: str, force: bool, inputs: tuple[str, ...]) -> None:
    check_target(path, force=force, inputs=inputs)


def _check_output_fits(path: str, keys: list[str]) -> None:
    if path.lower().endswith(".npy") and len(keys) > 1:
        raise SurgeonError(f"the base has {len(keys)} outputs ({', '.join(keys)}); name the output .npz to get one array per output")


# --- progress ---------------------------------------------------------------------------------


def _progress(enabled: bool, total: int):
    """Samples done, samples/s and ETA on stderr; rich measures the speed over its recent updates."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class SamplesPerSecond(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:,.0f} samples/s" if task.speed else "", style="progress.data.speed")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), SamplesPerSecond(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)
