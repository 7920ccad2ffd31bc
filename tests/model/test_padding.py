"""Channel padding for oneDNN computes the same function, and is left out where the padding
could reach an output (Keras' parity of the padded Xception: test_parity_with_keras.py); where
padding is the default (oneDNN's ISA cap: tests/test_cpu.py)."""

import mxnet as mx
import numpy as np

from conftest import cpu_file
from xception_mx.model.padding import pad_array, pad_network, padded_count, padding_helps_here

SHAPE = (2, 3, 9, 9)


def random_params(symbol, seed=0):
    """Arguments and auxiliary states of SYMBOL at SHAPE, random, variances positive."""
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=SHAPE)
    args = {n: mx.nd.array(rng.uniform(-1, 1, s)) for n, s in
            zip(symbol.list_arguments(), arg_shapes) if n != "data"}
    aux = {n: mx.nd.array(rng.uniform(0.5, 1.5, s)) for n, s in
           zip(symbol.list_auxiliary_states(), aux_shapes)}
    return args, aux


def run(symbol, args, aux, x):
    executor = symbol.bind(mx.cpu(), dict(args, data=mx.nd.array(x)), aux_states=aux)
    return executor.forward(is_train=False)[0].asnumpy()


def middle_flow(head=None):
    """conv 12 -> BN -> relu -> depthwise -> conv 12 -> + residual -> max pool -> conv 20,
    and optionally a head after it."""
    data = mx.sym.var("data")
    a = mx.sym.Convolution(data, num_filter=12, kernel=(1, 1), no_bias=True, name="a")
    a = mx.sym.BatchNorm(a, fix_gamma=False, name="a_bn")
    b = mx.sym.Activation(a, act_type="relu")
    b = mx.sym.Convolution(b, num_filter=12, num_group=12, kernel=(3, 3), pad=(1, 1),
                           no_bias=True, name="dw")
    b = mx.sym.Convolution(b, num_filter=12, kernel=(1, 1), no_bias=True, name="pw")
    b = mx.sym.BatchNorm(b, fix_gamma=False, name="pw_bn")
    c = mx.sym.Pooling(b + a, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    out = mx.sym.Convolution(c, num_filter=20, kernel=(1, 1), name="out")
    return head(c) if head else out


def test_padded_count_rounds_up_to_the_block():
    assert [padded_count(n) for n in (1, 16, 728, 1024)] == [16, 16, 736, 1024]


def test_pad_array_grows_every_axis_at_the_end():
    grown = pad_array(np.ones((2, 3)), (4, 3), fill=7.0)
    np.testing.assert_array_equal(grown, [[1, 1, 1], [1, 1, 1], [7, 7, 7], [7, 7, 7]])


def test_padded_network_is_the_same_function_with_16_channel_blocks():
    symbol = middle_flow()
    args, aux = random_params(symbol)
    padded, pargs, paux, changed = pad_network(symbol, args, aux, SHAPE)
    assert sorted(changed) == ["a", "dw", "pw"]
    assert pargs["pw_weight"].shape == (16, 16, 1, 1) and pargs["dw_weight"].shape[0] == 16
    assert pargs["out_weight"].shape == (20, 16, 1, 1)
    # every padded slice is exactly zero (a BatchNorm's variance 1), the rest as it was
    for name, value in list(pargs.items()) + list(paux.items()):
        value, old = value.asnumpy(), dict(args, **aux)[name].asnumpy()
        np.testing.assert_array_equal(value[tuple(slice(0, n) for n in old.shape)], old)
        rest = value.copy()
        rest[tuple(slice(0, n) for n in old.shape)] = 1.0 if name.endswith("_var") else 0.0
        assert (rest == (1.0 if name.endswith("_var") else 0.0)).all(), name
    x = np.random.RandomState(1).uniform(-1, 1, SHAPE).astype(np.float32)
    before, after = run(symbol, args, aux, x), run(padded, pargs, paux, x)
    assert after.shape == before.shape
    # the same sums in the same order plus exact zeros
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)


def test_padding_that_would_reach_a_dense_layer_is_left_out():
    symbol = middle_flow(lambda c: mx.sym.FullyConnected(mx.sym.Flatten(c), num_hidden=3,
                                                         name="fc"))
    args, aux = random_params(symbol)
    same, sargs, saux, changed = pad_network(symbol, args, aux, SHAPE)
    assert changed == [] and same is symbol and sargs is args and saux is aux


def test_padding_is_the_default_where_it_was_measured_faster(tmp_path):
    """Inference: Intel AVX-512 gains (1.48x at batch 8), AMD's AVX-512 does not, except in
    bf16.  Training: any AVX-512 CPU gains."""
    def cpu(vendor, flags):
        return cpu_file(tmp_path, vendor, flags)
    assert padding_helps_here(cpu("GenuineIntel", "fpu sse2 avx2 avx512f avx512bw"))
    assert not padding_helps_here(cpu("GenuineIntel", "fpu sse2 avx2 fma"))
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu sse2 avx2 avx512f avx512bw"))
    assert not padding_helps_here(str(tmp_path / "missing"))
    # Training: padded is faster on any AVX-512 CPU (AMD EPYC measured 1.09x).
    assert padding_helps_here(cpu("AuthenticAMD", "fpu avx2 avx512f"), training=True)
    assert padding_helps_here(cpu("GenuineIntel", "fpu avx2 avx512f"), training=True)
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu sse2 avx2 fma"), training=True)
    assert not padding_helps_here(str(tmp_path / "missing"), training=True)
    # bf16: unpadded, 728 channels fall back to gemm convolutions (AMD EPYC measured 2.0x).
    assert padding_helps_here(cpu("AuthenticAMD", "fpu avx2 avx512f"), precision="bf16")
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu avx2 avx512f"), precision="int8")
    assert padding_helps_here(cpu("GenuineIntel", "fpu avx2 avx512f"), precision="int8")
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu sse2 avx2 fma"), precision="bf16")
