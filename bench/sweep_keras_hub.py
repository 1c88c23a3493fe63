"""Sweep: keras-hub convolutional backbones through ``fold-bn``, ``split`` and ``prepare``.

For every backbone of ``fixtures/keras_hub_models.py`` (small configs, random weights, random
BatchNormalization statistics) and each of the three forms a user holds it in,
(a) ``user``: a functional model of one's own nesting the frozen backbone (GAP + Dropout + Dense),
(b) ``classifier``: the backbone's ImageClassifier task (frozen backbone),
(c) ``preset``: that task written by ``save_to_preset``,
the three library calls run on the file; each output is then compared with the model *as
keras-hub runs it* (``keras.saving.load_model`` of the file with keras-hub imported, or
``ImageClassifier.from_preset``), on seeded inputs: pass if the relative error (largest absolute
error over the output's largest magnitude) is <= 1e-5. ``split`` is compared as top(base(x)).
``prepare`` freezes the backbone by name (``--freeze 'NAME_backbone*'``), the user's intent in
every form: keras-hub 0.32's VGGBackbone saves no ``trainable`` flag, so it loads trainable.
``fold-bn`` on a backbone without BatchNormalization (VGG) must refuse in one line: counted
apart as "n/a", not as a pass.

Then, for backbones whose graph is all built-in Keras layers, every ``prepare`` output is loaded,
fit for 2 steps and checked (frozen weights bit-for-bit unchanged) in a Python process where
``import keras_hub`` fails (a meta-path blocker in a sitecustomize on PYTHONPATH).

Usage:
    python bench/sweep_keras_hub.py [--only resnet_v1,vgg] [--forms user,classifier,preset]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "fixtures"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_hub_models import BACKBONES, IMAGE, write_cases  # noqa: E402

FORMS = ("user", "classifier", "preset")
RTOL = 1e-5
NO_BN = "has no BatchNormalization layer"  # fold-bn's refusal, the right answer for VGG

BLOCKER = '''
import sys
class _NoKerasHub:
    def find_spec(self, name, path=None, target=None):
        if name == "keras_hub" or name.startswith("keras_hub."):
            raise ImportError("keras_hub is blocked in this process")
        return None
sys.meta_path.insert(0, _NoKerasHub())
'''

NO_HUB_JOB = '''
import json, sys
import numpy as np
try:
    import keras_hub  # noqa: F401
    sys.exit("keras_hub imported: the blocker failed")
except ImportError:
    pass
import keras
results = {}
for path in sys.argv[1:]:
    try:
        model = keras.models.load_model(path)
        frozen = {w.path: np.array(w.numpy()) for w in model.weights if not any(w is t for t in model.trainable_weights)}
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (8,) + tuple(model.inputs[0].shape[1:])).astype("float32")
        y = np.arange(8) % 3  # class labels: every form ends in 3 logits
        if not model.compiled:  # the user's model; a task comes compiled with its own loss
            model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        after = {w.path: np.array(w.numpy()) for w in model.weights}
        same = all(np.array_equal(value, after[name]) for name, value in frozen.items())
        results[path] = "ok" if same and frozen else ("no frozen weights" if not frozen else "frozen weights moved")
    except Exception as error:
        results[path] = type(error).__name__ + ": " + " ".join(str(error).split())[:150]
print("NO-HUB " + json.dumps(results))
'''


def reference(path: str, form: str):
    """The model as keras-hub runs it."""
    import keras
    import keras_hub

    if form == "preset":
        return keras_hub.models.ImageClassifier.from_preset(path)
    return keras.saving.load_model(path)


def relative_error(expected, got) -> float:
    import numpy as np

    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    return float(np.abs(expected - got).max() / max(np.abs(expected).max(), 1e-30))


def run_case(path: str, form: str, work: str) -> dict:
    import keras
    import numpy as np

    from surgeon import fold_bn_file, prepare_file, split_file
    from surgeon.passes.freeze import Selection

    row = {}
    try:
        model = reference(path, form)
    except Exception as error:
        return {"reference": "keras-hub cannot load it: " + " ".join(str(error).split())[:120]}
    x = np.random.default_rng(0).uniform(-1, 1, (4, IMAGE, IMAGE, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    stem = os.path.join(work, os.path.basename(path).replace(".keras", "") + "_" + form)

    def outcome(call, outputs):
        try:
            result = call()
        except Exception as error:
            text = " ".join(str(error).split())
            return ("n/a: " if NO_BN in text else "error: ") + text[:150]
        if not result.passed:
            return "failed: " + _why(result)
        got = outputs()
        error = relative_error(expected, got)
        return f"ok {error:.1e}" if error <= RTOL else f"off {error:.1e}"

    row["fold-bn"] = outcome(lambda: fold_bn_file(path, stem + "_folded.keras", force=True),
                             lambda: keras.models.load_model(stem + "_folded.keras")(x))
    row["split"] = outcome(lambda: split_file(path, base_path=stem + "_base.keras", top_path=stem + "_top.keras", force=True),
                           lambda: keras.models.load_model(stem + "_top.keras")(keras.models.load_model(stem + "_base.keras")(x)))
    # A glob: keras-hub 0.32's VGGBackbone saves no name either, so a process that loaded one
    # before names the next one "vgg_backbone_3".
    backbone = os.path.basename(path).rsplit("_", 1)[0] + "_backbone*"
    row["prepare"] = outcome(lambda: prepare_file(path, stem + "_prepared.keras", selection=Selection(freeze=(backbone,)), force=True),
                             lambda: keras.models.load_model(stem + "_prepared.keras")(x))
    row["prepared_path"] = stem + "_prepared.keras"
    return row


def _why(result) -> str:
    verification = getattr(result, "verification", None)
    if verification is not None and not verification.passed:
        return f"verification max rel {verification.max_rel:.1e}"
    checked = getattr(result, "checked", None)
    return checked.summary() if hasattr(checked, "summary") else "check failed"


def without_keras_hub(paths: list[str], work: str) -> dict:
    import json

    blocker = os.path.join(work, "block_keras_hub")
    os.makedirs(blocker, exist_ok=True)
    with open(os.path.join(blocker, "sitecustomize.py"), "w") as stream:
        stream.write(BLOCKER)
    env = {**os.environ, "PYTHONPATH": blocker, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(NO_HUB_JOB), *paths], env=env, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("NO-HUB "):
            return json.loads(line[len("NO-HUB "):])
    return {path: "job failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:150] for path in paths}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(BACKBONES))
    parser.add_argument("--forms", default=",".join(FORMS))
    args = parser.parse_args()
    names, forms = args.only.split(","), args.forms.split(",")
    counts = {command: [0, 0] for command in ("fold-bn", "split", "prepare", "no-keras-hub")}
    not_applicable = dict.fromkeys(counts, 0)
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            start = time.perf_counter()
            paths = write_cases(name, work)
            builtin = BACKBONES[name][4]
            prepared = []
            for form in forms:
                row = run_case(paths[form], form, work)
                cells = []
                for command in ("fold-bn", "split", "prepare"):
                    cell = row.get(command, row.get("reference", "?"))
                    if cell.startswith("n/a"):
                        not_applicable[command] += 1
                    else:
                        counts[command][1] += 1
                        counts[command][0] += cell.startswith("ok")
                    cells.append(f"{command}: {cell}")
                if builtin and row.get("prepare", "").startswith("ok"):
                    prepared.append(row["prepared_path"])
                print(f"{name:16} {form:10} " + " | ".join(cells), flush=True)
            if builtin:
                for path, verdict in without_keras_hub(prepared, work).items():
                    counts["no-keras-hub"][1] += 1
                    counts["no-keras-hub"][0] += verdict == "ok"
                    print(f"{name:16} no keras-hub: {os.path.basename(path)}: {verdict}", flush=True)
            print(f"{name:16} {time.perf_counter() - start:.1f} s", flush=True)
    print("\npassed (relative error <= 1e-5 against keras-hub's own run):")
    for command, (passed, total) in counts.items():
        extra = f" (+{not_applicable[command]} n/a: no BatchNormalization to fold)" if not_applicable[command] else ""
        print(f"  {command:13} {passed}/{total}{extra}")


if __name__ == "__main__":
    main()
