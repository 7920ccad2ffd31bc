"""mxnet2keras on converted own models (issue #12): Keras -> MXNet -> Keras gives back every
weight and the outputs, and only as a whole .keras model."""
import numpy as np
import pytest

import own_models
from conftest import PHOTOS, assert_bad_input, run_tool
from xception_mx.conversion import convert_file
from xception_mx import load_images
from xception_mx.checkpoint.reading import read_meta


def canonical_weights(model):
    """``{canonical layer name: [arrays]}`` (a nested base as one entry; the
    residual layers Keras auto-names by their place)."""
    from xception_mx.keras_side import canonical_names
    return {canonical: model.get_layer(name).get_weights()
            for name, canonical in canonical_names(model).items()}


@pytest.mark.slow
@pytest.mark.parametrize("builder", [own_models.nested, own_models.flattened],
                         ids=["nested", "flattened-150x200"])
def test_keras_to_mxnet_to_keras_gives_back_every_weight_and_the_outputs(builder, tmp_path):
    model = own_models.built(builder)
    path = own_models.save(model, str(tmp_path / "model.keras"))
    convert_file(path, str(tmp_path / "mx"))
    result = run_tool("mxnet2keras", tmp_path / "mx", "-o", tmp_path / "back.keras")
    assert result.returncode == 0, result.stderr
    keras = own_models.import_keras()
    back = keras.models.load_model(str(tmp_path / "back.keras"), compile=False, safe_mode=True)
    original, returned = canonical_weights(model), canonical_weights(back)
    assert sorted(original) == sorted(returned)
    assert sum(len(v) for v in returned.values()) >= 236
    for name in original:
        assert len(original[name]) == len(returned[name]), name
        for a, b in zip(original[name], returned[name]):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    raw = bool(read_meta(str(tmp_path / "mx"))["model"]["transfer"]["preprocess"])
    x = np.ascontiguousarray(load_images(PHOTOS, model.input_shape[1:3], raw=raw)
                             .transpose(0, 2, 3, 1))
    expected = model.predict(x, verbose=0)
    assert np.abs(back.predict(x, verbose=0) - expected).max() <= 1e-6 * max(
        1.0, float(np.abs(expected).max()))


def test_mxnet2keras_writes_a_transfer_model_only_as_a_whole_keras_model(converted, tmp_path):
    _, prefix = converted["nested"]
    for name in ("back.h5", "back.weights.h5"):
        assert_bad_input(run_tool("mxnet2keras", prefix, "-o", tmp_path / name), name,
                         "whole .keras model")
    assert list(tmp_path.iterdir()) == []
