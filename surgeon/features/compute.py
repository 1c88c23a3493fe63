"""Run the base over batches into memory-mapped ``.npy`` files: one whole output, or one shard.

The loop every engine runs: the single-process path over all samples (one file) or over each
shard in turn, a Ray worker over the shards it is given. The next batch is read while the current
one runs; outputs are written batch by batch, so memory stays at a few batches whatever the size
of the data.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Callable, Iterator

import numpy as np

from surgeon.errors import SurgeonError
from surgeon.features.data import read_batches
from surgeon.features.store import replace_durably, shard_file_names, temporary_name


def run_model(model, batches: Iterator, count: int, paths: list[str], labels_path: str | None,
              advance: Callable[[int], None] = lambda size: None) -> tuple[list[list[int]], list[str]]:
    """Write the model's outputs over ``batches`` (``count`` samples) to ``paths``; shapes and dtypes."""
    outputs: list[np.ndarray] | None = None
    labels = None
    written = 0
    with concurrent.futures.ThreadPoolExecutor(1) as reader:
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
                outputs = [np.lib.format.open_memmap(path, mode="w+", dtype=r.dtype, shape=(count,) + r.shape[1:])
                           for path, r in zip(paths, flat)]
                if labels_path:
                    labels = np.lib.format.open_memmap(labels_path, mode="w+", dtype=np.int32, shape=(count,))
            size = flat[0].shape[0]
            if written + size > count:
                raise SurgeonError(f"read more than the {count} samples expected; the data changed while being read")
            for target, value in zip(outputs, flat):
                target[written:written + size] = value
            if labels is not None:
                labels[written:written + size] = batch_labels
            written += size
            advance(size)
    if written != count:
        raise SurgeonError(f"read {written} samples where {count} were expected; the data changed while being read")
    for array in outputs + ([labels] if labels is not None else []):
        array.flush()
    shapes, dtypes = [list(a.shape) for a in outputs], [str(a.dtype) for a in outputs]
    del outputs, labels  # close the memory maps before the files are zipped or renamed
    return shapes, dtypes


def write_shard(model, task: dict, batch_size: int, directory: str, index: int, start: int, stop: int, keys: list[str],
                advance: Callable[[int], None] = lambda size: None) -> dict:
    """Compute one shard into temporary files, rename them into place, return its manifest record."""
    files, labels = shard_file_names(index, keys, task["kind"] == "images")
    targets = [os.path.join(directory, name) for name in files.values()] + ([os.path.join(directory, labels)] if labels else [])
    temporaries = [temporary_name(directory, os.path.basename(target)) for target in targets]
    try:
        shapes, dtypes = run_model(model, read_batches(task, batch_size), stop - start, temporaries[:len(files)],
                                   temporaries[len(files)] if labels else None, advance)
        for temporary, target in zip(temporaries, targets):
            replace_durably(temporary, target)
    finally:
        for temporary in temporaries:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return {"index": index, "start": start, "stop": stop, "files": files, "labels": labels, "shapes": shapes, "dtypes": dtypes}
