"""The data a base runs over: where each sample comes from, and reading any range of samples.

Three kinds of input, one view: an ``.npy``/``.npz`` file, a folder of ``.npy`` shards (taken in
sorted file-name order) and a folder of images with one sub-folder per class. ``open_data`` checks
the data against the base once (shapes, count) and describes it; ``Data.task(start, stop)`` cuts a
plain, picklable description of samples ``start:stop`` that any process can read with
``read_batches`` (a Ray worker on another machine included, if it sees the same paths).

Both engines read through ``read_batches``, batch boundaries counted from the range's start, so
that the single-process run and a run cut into shards feed the base exactly the same batches.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from typing import Iterator

import numpy as np

from surgeon.errors import SurgeonError, one_line

IMAGE_PREPROCESSING = (
    "decoded, converted to {mode}, resized to {height}x{width} (bilinear, aspect ratio not kept), "
    "float32 in [0, 255], no other scaling: any normalization must be part of the base"
)


@dataclasses.dataclass(frozen=True)
class Part:
    """One array file: ``keys`` name its members per base input (``None``: a plain .npy)."""

    path: str
    keys: tuple[str, ...] | None
    count: int


@dataclasses.dataclass
class Data:
    path: str
    kind: str  # "arrays" or "images"
    count: int
    input_dtypes: list[str]
    parts: list[Part] = dataclasses.field(default_factory=list)  # arrays
    images: list[str] = dataclasses.field(default_factory=list)  # images, in sample order
    labels: np.ndarray | None = None  # images: class index per sample
    class_names: list[str] | None = None
    image_shape: tuple[int, int, int] | None = None  # height, width, channels
    preprocessing: str | None = None

    def sources(self) -> list[tuple[str, int]]:
        """(file relative to the data path, samples it holds), in sample order."""
        if self.kind == "images":
            return [(os.path.relpath(path, self.path), 1) for path in self.images]
        root = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        return [(os.path.relpath(part.path, root), part.count) for part in self.parts]

    def task(self, start: int, stop: int) -> dict:
        """A picklable description of samples ``start:stop`` for ``read_batches``."""
        if self.kind == "images":
            return {"kind": "images", "paths": self.images[start:stop], "labels": self.labels[start:stop].tolist(),
                    "image_shape": self.image_shape}
        segments, offset = [], 0
        for part in self.parts:
            low, high = max(start, offset), min(stop, offset + part.count)
            if low < high:
                segments.append((part.path, part.keys, low - offset, high - offset))
            offset += part.count
        return {"kind": "arrays", "segments": segments, "dtypes": self.input_dtypes}


def open_data(data: str, model) -> Data:
    """Describe ``data`` for ``model``; one-line errors for anything that does not fit."""
    dtypes = [str(np.dtype(str(tensor.dtype))) for tensor in model.inputs]
    if os.path.isdir(data):
        entries = os.listdir(data)
        if any(name.endswith(".npy") for name in entries):
            return _shard_folder(data, model, dtypes, sorted(name for name in entries if name.endswith(".npy")))
        return _image_folder(data, model, dtypes)
    if not os.path.exists(data):
        raise SurgeonError(f"no such file or folder: '{data}'; give an .npy/.npz file, a folder of .npy shards or a folder of images")
    part = _part(data, model)
    return Data(os.path.abspath(data), "arrays", part.count, dtypes, parts=[part])


# --- arrays -----------------------------------------------------------------------------------


def _shard_folder(folder: str, model, dtypes: list[str], names: list[str]) -> Data:
    parts = [_part(os.path.join(os.path.abspath(folder), name), model) for name in names]
    return Data(os.path.abspath(folder), "arrays", sum(part.count for part in parts), dtypes, parts=parts)


def _part(path: str, model) -> Part:
    """Open one array file far enough to check it (header, size, shapes); nothing is read yet."""
    names = [tensor._keras_history[0].name for tensor in model.inputs]
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npy":
        if len(names) > 1:
            raise SurgeonError(f"the base takes {len(names)} inputs ({', '.join(names)}); give an .npz keyed by input name")
        keys = None
    elif extension == ".npz":
        members = _npz_members(path)
        if all(name in members for name in names):
            keys = tuple(names)
        elif len(members) == len(names):
            keys = tuple(members)
        else:
            raise SurgeonError(f"'{path}' holds arrays {list(members)}, but the base takes inputs {names}; key the .npz by input name")
    else:
        raise SurgeonError(f"'{path}' is neither .npy, .npz nor a folder of images")
    arrays = part_arrays(path, keys)
    count = arrays[0].shape[0] if arrays[0].ndim else 0
    if count == 0:
        raise SurgeonError(f"'{path}' holds no samples")
    if any(a.shape[0] != count for a in arrays):
        raise SurgeonError(f"the arrays in '{path}' have different lengths {[a.shape[0] for a in arrays]}; each input needs one row per sample")
    for array, tensor in zip(arrays, model.inputs):
        expected = tuple(tensor.shape[1:])
        if len(array.shape) != len(tensor.shape) or any(e is not None and e != a for e, a in zip(expected, array.shape[1:])):
            raise SurgeonError(f"'{path}' holds samples of shape {tuple(array.shape[1:])}, but the base takes {expected}")
    return Part(path, keys, count)


def part_arrays(path: str, keys: tuple[str, ...] | None) -> list[np.ndarray]:
    """The arrays of one file, memory-mapped where the format allows."""
    if keys is None:
        try:
            return [np.load(path, mmap_mode="r", allow_pickle=False)]
        except (OSError, ValueError) as error:
            raise SurgeonError(f"cannot read '{path}' as an .npy array: {error}") from None
    members = _npz_members(path)
    return [members[key]() for key in keys]


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


# --- images -----------------------------------------------------------------------------------


def _image_folder(folder: str, model, dtypes: list[str]) -> Data:
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
        # Only to list the files and classes the way Keras users know; the pixels are read by
        # read_batches, so that any range of images can be read on its own.
        listing = keras.utils.image_dataset_from_directory(
            folder, labels="inferred", label_mode="int", color_mode=mode, batch_size=None,
            image_size=(shape[1], shape[2]), shuffle=False, verbose=False,
        )
    except ValueError as error:
        raise SurgeonError(f"cannot read images from '{folder}': {one_line(error, limit=200)}") from None
    paths = [os.path.abspath(path) for path in listing.file_paths]
    if not paths:
        raise SurgeonError(f"no images found in '{folder}'; give a folder with one sub-folder of images per class, or a folder of .npy shards")
    root = os.path.abspath(folder)
    classes = list(listing.class_names)
    labels = np.array([classes.index(os.path.relpath(path, root).split(os.sep)[0]) for path in paths], dtype=np.int32)
    return Data(root, "images", len(paths), dtypes, images=paths, labels=labels, class_names=classes,
                image_shape=(shape[1], shape[2], shape[3]),
                preprocessing=IMAGE_PREPROCESSING.format(mode=mode.upper() if mode != "grayscale" else mode, height=shape[1], width=shape[2]))


# --- reading ----------------------------------------------------------------------------------


def read_batches(task: dict, batch_size: int) -> Iterator[tuple[list[np.ndarray], np.ndarray | None]]:
    """Yield (one array per base input, labels or None) for the samples of ``task``, in order."""
    if task["kind"] == "images":
        yield from _image_batches(task, batch_size)
    else:
        yield from _array_batches(task, batch_size)


def _array_batches(task: dict, batch_size: int):
    dtypes = [np.dtype(d) for d in task["dtypes"]]
    pending: list[list[np.ndarray]] = []  # pieces of the batch being assembled, per piece a list per input
    size = 0
    for path, keys, start, stop in task["segments"]:
        arrays = part_arrays(path, keys)
        while start < stop:
            take = min(stop - start, batch_size - size)
            # np.asarray copies the rows out of the memory map: only this batch is resident.
            pending.append([np.asarray(a[start:start + take], dtype=d) for a, d in zip(arrays, dtypes)])
            size += take
            start += take
            if size == batch_size:
                yield _join(pending), None
                pending, size = [], 0
    if size:
        yield _join(pending), None


def _join(pieces: list[list[np.ndarray]]) -> list[np.ndarray]:
    if len(pieces) == 1:
        return pieces[0]
    return [np.concatenate(column) for column in zip(*pieces)]


def _image_batches(task: dict, batch_size: int):
    import tensorflow as tf

    height, width, channels = task["image_shape"]

    def load(path):
        # What keras.utils.image_dataset_from_directory does (bilinear, no crop or pad).
        image = tf.image.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        image = tf.image.resize(image, (height, width), method="bilinear")
        image.set_shape((height, width, channels))
        return image

    paths, labels = task["paths"], np.asarray(task["labels"], dtype=np.int32)
    dataset = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    done = 0
    iterator = iter(dataset)
    while True:
        try:
            images = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError:
            _name_the_bad_image(load, paths[done:done + batch_size])
            raise
        yield [images.numpy()], labels[done:done + len(images)]
        done += len(images)


def _name_the_bad_image(load, paths: list[str]) -> None:
    """tf.data's error does not say which file failed: decode the batch's files one by one."""
    import tensorflow as tf

    for path in paths:
        try:
            load(tf.constant(path))
        except tf.errors.OpError as error:
            # TensorFlow wraps the reason in {{function_node ...}} and [Op:...]: keep the reason.
            text = one_line(re.sub(r"\{\{.*?\}\}|\[Op:.*", "", str(error.message)), limit=160)
            raise SurgeonError(f"cannot decode the image '{path}': {text}; remove or replace the file") from None
