"""Layout transforms are exact inverses; the name table is complete data."""
import numpy as np
import pytest

from xception_mx.conversion import layouts
from xception_mx.conversion.name_table import build_name_table, format_table, keras_layers
from xception_mx import Xception

SHAPES = {"conv_kernel": (3, 3, 32, 64), "depthwise_kernel": (3, 3, 128, 1),
          "pointwise_kernel": (1, 1, 128, 256), "dense_kernel": (2048, 10), "identity": (7,)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_inverse_transform_gives_back_the_keras_tensor(name):
    x = np.random.RandomState(0).normal(size=SHAPES[name]).astype(np.float32)
    y = layouts.FORWARD[name](x)
    assert y.shape == layouts.transformed_shape(name, x.shape)
    assert y.flags["C_CONTIGUOUS"]
    back = layouts.INVERSE[name](y)
    assert back.dtype == x.dtype and np.array_equal(back, x)


def test_depthwise_kernel_becomes_one_group_per_channel():
    kernel = np.arange(3 * 3 * 4).reshape(3, 3, 4, 1)
    weight = layouts.depthwise_kernel(kernel)
    assert weight.shape == (4, 1, 3, 3)
    for c in range(4):
        np.testing.assert_array_equal(weight[c, 0], kernel[:, :, c, 0])


@pytest.mark.parametrize("include_top", [True, False])
def test_name_table_fills_exactly_the_network_parameters(include_top):
    rows = build_name_table(include_top=include_top, classes=5)
    net = Xception(include_top=include_top, classes=5)
    assert sorted(r.mxnet_param for r in rows) == sorted(net.collect_params().keys())
    shapes = {name: p.shape for name, p in net.collect_params().items()}
    for row in rows:
        assert layouts.transformed_shape(row.transform, row.keras_shape) == shapes[row.mxnet_param]


def test_only_the_residual_layers_are_matched_by_shape():
    by_shape = [layer.name for layer in keras_layers() if layer.match == "shape"]
    assert by_shape == ["block%d_residual_%s" % (b, k) for b in (2, 3, 4, 13)
                        for k in ("conv", "bn")]
    shapes = [tuple(layer.shapes.items()) for layer in keras_layers() if layer.match == "shape"]
    assert len(set(shapes)) == len(shapes)


def test_name_table_prints_as_tab_separated_rows():
    text = format_table(build_name_table())
    lines = text.splitlines()
    assert len(lines) == 237
    assert "block1_conv1_bn\tmoving_variance\tname\t-\tblock1_conv1_bn_running_var\tidentity\t32" \
        in lines
