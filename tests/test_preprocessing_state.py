"""Adapted lookup layers keep their vocabulary through surgeon (issue 17, item 3).

A ``.keras`` file stores a StringLookup's or TextVectorization's adapted vocabulary as an asset
(``assets/<object path>/vocabulary.txt``), not as a weight. (Normalization and Discretization,
whose state is weights and config, are rows of tests/test_layer_catalog.py.) String inputs are
outside what surgeon's numerical verification feeds, so these are checked through the library:
read, write, load with plain Keras, compare with the original on strings.
"""

from __future__ import annotations

import numpy as np
import pytest

from surgeon.errors import SurgeonError
from surgeon.io import read_model, write_model


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    import keras

    L = keras.layers
    vectorize = L.TextVectorization(max_tokens=10, output_sequence_length=4, name="vectorize")
    vectorize.adapt(np.array(["a b c", "b c d", "c d e e"]))
    lookup = L.StringLookup(name="lookup")
    lookup.adapt(np.array([["x", "y"], ["y", "z"]]))
    text, tokens = keras.Input((), dtype="string", name="text"), keras.Input((2,), dtype="string", name="tokens")
    model = keras.Model([text, tokens], [L.Embedding(12, 2, name="embedding")(vectorize(text)), lookup(tokens)])
    path = str(tmp_path_factory.mktemp("text") / "text.keras")
    model.save(path)
    return path, model


def test_vocabularies_survive_a_rewrite(text_model, tmp_path):
    from surgeon.verify import load_plain

    path, model = text_model
    spec = read_model(path)
    assert set(spec.assets) == {"lookup", "vectorize"}
    written = str(tmp_path / "out.keras")
    write_model(spec, written)
    inputs = [np.array(["a e", "d d b zz"]), np.array([["z", "x"], ["q", "y"]])]
    for expected, actual in zip(model(inputs), load_plain(written)(inputs)):
        np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))


def test_h5_output_of_a_vocabulary_is_refused(text_model, tmp_path):
    """Keras' legacy .h5 has no place for assets: it would reload the lookup empty."""
    with pytest.raises(SurgeonError, match="cannot store"):
        write_model(read_model(text_model[0]), str(tmp_path / "out.h5"))
    assert not (tmp_path / "out.h5").exists()
