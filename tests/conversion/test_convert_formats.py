"""keras2mxnet reads every Keras file layout into the same MXNet parameters."""
import numpy as np
import pytest

from xception_mx.conversion import convert
from xception_mx.conversion.name_table import build_name_table

FORMATS = ["legacy-h5", "legacy-model-h5", "weights-h5", "keras", "keras2-h5", "keras1-h5",
           "split-names-shuffled-h5", "weights-h5-unnamed", "tf-keras-weights-h5",
           "tf-keras-model-h5", "tf-keras-archive"]


@pytest.fixture(scope="module")
def canonical(keras_files_top):
    return convert(keras_files_top["legacy-h5"], classifier_activation=None)


def assert_same_params(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == np.float32 and np.array_equal(a[name], b[name]), name


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_identical_parameters(fmt, keras_files_top, canonical):
    got = convert(keras_files_top[fmt], classifier_activation=None)
    assert got.match.include_top and got.match.classes == 1000
    if fmt.startswith("tf-keras"):                 # written by Keras 2 itself
        assert got.source.attrs["keras_version"].startswith("2.")
    assert_same_params(got.arg_params, canonical.arg_params)
    assert_same_params(got.aux_params, canonical.aux_params)


def test_parameters_carry_keras_values_in_mxnet_layout(reference_model, canonical):
    arg, aux = canonical.arg_params, canonical.aux_params
    depthwise = reference_model.get_layer("block4_sepconv2").depthwise_kernel.numpy()
    assert arg["block4_sepconv2_depthwise_weight"].shape == (728, 1, 3, 3)
    assert arg["block4_sepconv2_depthwise_weight"][5, 0, 2, 1] == depthwise[2, 1, 5, 0]
    pointwise = reference_model.get_layer("block4_sepconv2").pointwise_kernel.numpy()
    assert arg["block4_sepconv2_pointwise_weight"][700, 3, 0, 0] == pointwise[0, 0, 3, 700]
    conv = reference_model.get_layer("block1_conv2").kernel.numpy()
    assert arg["block1_conv2_weight"][60, 31, 0, 2] == conv[0, 2, 31, 60]
    dense = reference_model.get_layer("predictions")
    assert arg["predictions_weight"][999, 2047] == dense.kernel.numpy()[2047, 999]
    np.testing.assert_array_equal(arg["predictions_bias"], dense.bias.numpy())
    bn = reference_model.get_layer("block7_sepconv3_bn")
    np.testing.assert_array_equal(arg["block7_sepconv3_bn_gamma"], bn.gamma.numpy())
    np.testing.assert_array_equal(arg["block7_sepconv3_bn_beta"], bn.beta.numpy())
    np.testing.assert_array_equal(aux["block7_sepconv3_bn_running_mean"], bn.moving_mean.numpy())
    np.testing.assert_array_equal(aux["block7_sepconv3_bn_running_var"],
                                  bn.moving_variance.numpy())


def test_residual_layers_are_matched_by_shape_not_name(keras_files_top, canonical):
    got = convert(keras_files_top["split-names-shuffled-h5"], classifier_activation=None)
    assert got.match.file_names["block2_residual_conv"] == "conv2d_3"
    assert got.match.file_names["block13_residual_conv"] == "conv2d"
    assert got.match.file_names["block2_residual_bn"] == "batch_normalization_2"
    keras1 = convert(keras_files_top["keras1-h5"], classifier_activation=None)
    assert keras1.match.file_names["block3_residual_conv"] == "convolution2d_2"
    assert keras1.match.file_names["block3_residual_bn"] == "batchnormalization_2"


def test_bn_statistics_are_non_trivial_in_the_reference(canonical):
    """Guard for the fixtures: a swapped or dropped BN tensor must change the output."""
    aux, arg = canonical.aux_params, canonical.arg_params
    for name in ("block1_conv1_bn", "block10_sepconv2_bn", "block13_residual_bn"):
        assert np.abs(aux[name + "_running_mean"]).min() > 0
        assert np.abs(aux[name + "_running_var"] - 1).max() > 0.05
        assert np.abs(arg[name + "_gamma"] - 1).max() > 0.1
        assert np.abs(arg[name + "_beta"]).max() > 0.1


def test_classes_come_from_the_dense_shape(keras_file_10_classes):
    path, _ = keras_file_10_classes
    got = convert(path)
    assert got.match.include_top and got.match.classes == 10
    assert got.arg_params["predictions_weight"].shape == (10, 2048)
    assert got.net.classes == 10 and got.net.classifier_activation == "softmax"


def test_notop_file_gives_a_feature_extractor(keras_file_notop):
    got = convert(keras_file_notop, pooling="avg")
    assert not got.match.include_top and got.net.pooling == "avg"
    assert "predictions_weight" not in got.arg_params
    assert len(got.rows) == len(build_name_table(include_top=False))


def test_every_tensor_used_once_and_every_parameter_filled_once(canonical):
    rows = canonical.rows
    assert len({(r.keras_layer, r.keras_weight) for r in rows}) == len(rows) == 236
    assert len({r.mxnet_param for r in rows}) == len(rows)
    net_params = set(canonical.net.collect_params().keys())
    assert net_params == set(canonical.arg_params) | set(canonical.aux_params)
