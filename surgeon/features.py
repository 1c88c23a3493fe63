"""``features``: run a (frozen, mode-independent) base over a dataset and write its outputs.

The features are exactly what the top sees when the base written by ``surgeon split`` is composed
with it and fine-tuned: the base has no Dropout/noise layers and frozen BatchNormalization, so its
output in training mode equals its output in inference mode, which is what is computed here.

Memory stays bounded for data larger than RAM: ``.npy`` inputs are memory-mapped, uncompressed
``.npz`` members too, image folders are streamed by ``tf.data``; outputs are written batch by batch
into memory-mapped ``.npy`` files (``numpy.lib.format.open_memmap``). The next batch is read while
the current one runs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import tempfile
import time
import zipfile
from typing import Iterator

import numpy as np

from surgeon.errors import SurgeonError, one_line
from surgeon.io.loading import load_checked
from surgeon.io.output import check_target, pending_outputs
from surgeon.passes.split import feature_keys

IMAGE_PREPROCESSING = (
    "decoded, converted to {mode}, resized to {height}x{width} (bilinear, aspect ratio not kept), "
    "float32 in [0, 255], no other scaling: any normalization must be part of the base"
)


@dataclasses.dataclass
class FeaturesResult:
    base: str
    data: str
    output: str
    labels: str | None  # the labels file, for an image folder
    count: int
    features: dict[str, list[int]]  # output key -> array shape
    class_names: list[str] | None
    preprocessing: str | None
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["samples_per_second"] = self.samples_per_second
        return data


def extract_features(base, data: str, output: str, *, batch_size: int = 32, force: bool = False,
                     progress: bool = True, allow_code: bool = False) -> FeaturesResult:
    """Write ``base``'s inference outputs over ``data`` to ``output`` (.npy, or .npz for several outputs).

    ``base`` is a model file or a ``keras.Model``; ``data`` an .npy/.npz file or a folder of images
    with one sub-folder per class (the labels then go to ``<output stem>_labels.npy``).

    Example:
        >>> result = extract_features("model_base.keras", "images.npy", "features.npy")
        >>> np.load("features.npy").shape
        (1000, 16)
    """
    if batch_size < 1:
        raise SurgeonError(f"--batch-size must be at least 1, not {batch_size}")
    named_files = tuple(str(p) for p in (data, base) if isinstance(p, (str, os.PathLike)))
    _check_output(output, force, named_files)  # before loading TensorFlow
    model, base_name = _load_base(base, allow_code)
    keys = _output_keys(model)
    _check_output_fits(output, keys)
    source = _open_data(data, model, batch_size)
    labels_path = os.path.splitext(output)[0] + "_labels.npy" if source.labels else None
    if labels_path:
        _check_output(labels_path, force, named_files)
    targets = [output] + ([labels_path] if labels_path else [])
    started = time.perf_counter()
    with pending_outputs(targets) as pending, tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(output))) as scratch:
        # One memory-mapped .npy per base output; several are zipped (uncompressed) into the .npz.
        paths = [pending.path(output)] if output.endswith(".npy") else [os.path.join(scratch, f"{key}.npy") for key in keys]
        shapes = _run(model, source, paths, pending.path(labels_path) if labels_path else None, progress)
        if output.endswith(".npz"):
            with zipfile.ZipFile(pending.path(output), "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for key, path in zip(keys, paths):
                    archive.write(path, arcname=f"{key}.npy")
        pending.commit()
    seconds = time.perf_counter() - started
    return FeaturesResult(base_name, data, output, labels_path, source.count, dict(zip(keys, shapes)),
                          source.class_names, source.preprocessing, seconds)


# --- the base ---------------------------------------------------------------------------------


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
    if os.path.splitext(path)[1].lower() not in (".npy", ".npz"):
        raise SurgeonError(f"cannot tell the output format of '{path}': name it .npy (one output) or .npz")
    check_target(path, force=force, inputs=inputs)


def _check_output_fits(path: str, keys: list[str]) -> None:
    if path.lower().endswith(".npy") and len(keys) > 1:
        raise SurgeonError(f"the base has {len(keys)} outputs ({', '.join(keys)}); name the output .npz to get one array per output")


# --- the data ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Source:
    count: int
    batches: Iterator  # yields (list of input arrays, labels or None)
    labels: bool = False
    class_names: list[str] | None = None
    preprocessing: str | None = None


def _open_data(data: str, model, batch_size: int) -> _Source:
    if os.path.isdir(data):
        return _image_folder(data, model, batch_size)
    if not os.path.exists(data):
        raise SurgeonError(f"no such file or folder: '{data}'; give an .npy/.npz file or a folder of images")
    arrays = _arrays(data, model)
    count = arrays[0].shape[0]
    if count == 0:
        raise SurgeonError(f"'{data}' holds no samples")
    if any(a.shape[0] != count for a in arrays):
        raise SurgeonError(f"the arrays in '{data}' have different lengths {[a.shape[0] for a in arrays]}; each input needs one row per sample")
    for array, tensor in zip(arrays, model.inputs):
        expected = tuple(tensor.shape[1:])
        if len(array.shape) != len(tensor.shape) or any(e is not None and e != a for e, a in zip(expected, array.shape[1:])):
            raise SurgeonError(f"'{data}' holds samples of shape {tuple(array.shape[1:])}, but the base takes {expected}")
    dtypes = [np.dtype(str(tensor.dtype)) for tensor in model.inputs]

    def batches():
        for start in range(0, count, batch_size):
            # np.asarray copies one batch out of the memory map: only that batch is resident.
            yield [np.asarray(a[start:start + batch_size], dtype=d) for a, d in zip(arrays, dtypes)], None

    return _Source(count, batches())


def _arrays(path: str, model) -> list[np.ndarray]:
    names = _input_names(model)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npy":
        if len(names) > 1:
            raise SurgeonError(f"the base takes {len(names)} inputs ({', '.join(names)}); give an .npz keyed by input name")
        try:
            return [np.load(path, mmap_mode="r", allow_pickle=False)]
        except (OSError, ValueError) as error:
            raise SurgeonError(f"cannot read '{path}' as an .npy array: {error}") from None
    if extension != ".npz":
        raise SurgeonError(f"'{path}' is neither .npy, .npz nor a folder of images")
    members = _npz_members(path)
    keys = list(members)
    if all(name in members for name in names):
        chosen = names
    elif len(keys) == len(names):
        chosen = keys
    else:
        raise SurgeonError(f"'{path}' holds arrays {keys}, but the base takes inputs {names}; key the .npz by input name")
    return [members[key]() for key in chosen]


def _npz_members(path: str) -> dict:
    """Key -> loader; stored (uncompressed) members are memory-mapped in place, others read whole."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise SurgeonError(f"cannot read '{path}' as an .npz archive: {error}") from None
    members = {}
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if info.compress_type == zipfile.ZIP_STORED:
                members[key] = _memmap_member(path, info)
            else:
                members[key] = lambda key=key: np.load(path, allow_pickle=False)[key]
    return members


def _memmap_member(path: str, info: zipfile.ZipInfo):
    def load():
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            # Local file header: the name and extra-field lengths sit at bytes 26..30.
            name_length = int.from_bytes(local[26:28], "little")
            extra_length = int.from_bytes(local[28:30], "little")
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
        if dtype.hasobject:
            raise SurgeonError(f"'{path}' holds Python objects; give numeric arrays")
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")

    return load


def _image_folder(folder: str, model, batch_size: int) -> _Source:
    if len(model.inputs) != 1:
        raise SurgeonError(f"the base takes {len(model.inputs)} inputs; a folder of images feeds only one: give an .npz")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] not in (1, 3, 4) or shape[1] is None or shape[2] is None:
        raise SurgeonError(
            f"the base takes inputs of shape {shape}; a folder of images needs a fixed (height, width, 1|3|4) input"
        )
    import keras

    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[shape[-1]]
    try:
        dataset = keras.utils.image_dataset_from_directory(
            folder, labels="inferred", label_mode="int", color_mode=mode, batch_size=batch_size,
            image_size=(shape[1], shape[2]), shuffle=False, interpolation="bilinear", verbose=False,
        )
    except ValueError as error:
        raise SurgeonError(f"cannot read images from '{folder}': {one_line(error, limit=200)}") from None
    count = len(dataset.file_paths)
    if count == 0:
        raise SurgeonError(f"no images found in '{folder}'; it needs one sub-folder of images per class")

    def batches():
        for images, labels in dataset:
            yield [images.numpy()], labels.numpy()

    return _Source(count, batches(), labels=True, class_names=list(dataset.class_names),
                   preprocessing=IMAGE_PREPROCESSING.format(mode=mode.upper() if mode != "grayscale" else mode, height=shape[1], width=shape[2]))


# --- the loop ---------------------------------------------------------------------------------


def _run(model, source: _Source, paths: list[str], labels_path: str | None, progress: bool) -> list[list[int]]:
    outputs: list[np.ndarray] | None = None
    labels = None
    written = 0
    bar = _progress(progress, source.count)
    with bar, concurrent.futures.ThreadPoolExecutor(1) as reader:
        task = bar.add_task("features", total=source.count)
        batches = iter(source.batches)
        pending = reader.submit(next, batches, None)
        while True:
            item = pending.result()
            if item is None:
                break
            pending = reader.submit(next, batches, None)  # read the next batch while this one runs
            inputs, batch_labels = item
            result = model.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
            flat = list(result.values()) if isinstance(result, dict) else (list(result) if isinstance(result, (list, tuple)) else [result])
            if outputs is None:
                # Allocated after the first batch: only now are sizes the model leaves open known.
                outputs = [np.lib.format.open_memmap(path, mode="w+", dtype=r.dtype, shape=(source.count,) + r.shape[1:])
                           for path, r in zip(paths, flat)]
                if labels_path:
                    labels = np.lib.format.open_memmap(labels_path, mode="w+", dtype=np.int32, shape=(source.count,))
            size = flat[0].shape[0]
            for target, value in zip(outputs, flat):
                target[written:written + size] = value
            if labels is not None:
                labels[written:written + size] = batch_labels
            written += size
            bar.update(task, advance=size)
    if written != source.count:
        raise SurgeonError(f"read {written} samples where {source.count} were expected; the data changed while being read")
    for array in outputs + ([labels] if labels is not None else []):
        array.flush()
    shapes = [list(a.shape) for a in outputs]
    del outputs, labels  # close the memory maps before the files are zipped or renamed
    return shapes


def _progress(enabled: bool, total: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)
