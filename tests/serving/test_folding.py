"""BatchNorm folded into the convolution before it (the bf16 fast path's first step) is the
same function: checked against MXNet's own BatchNorm on a small graph with every case
Xception has (a plain convolution, a depthwise then pointwise pair, a convolution with a
bias, fix_gamma) and one it must leave alone (a convolution read twice)."""
import json

import mxnet as mx
import numpy as np

from xception_mx.serving.folding import fold_batchnorm


def small_graph():
    x = mx.sym.var("data")
    a = mx.sym.Convolution(x, kernel=(3, 3), pad=(1, 1), num_filter=8, no_bias=True,
                           name="conv1")
    a = mx.sym.relu(mx.sym.BatchNorm(a, fix_gamma=False, eps=1e-3, name="bn1"))
    d = mx.sym.Convolution(a, kernel=(3, 3), pad=(1, 1), num_filter=8, num_group=8,
                           no_bias=True, name="dw")
    p = mx.sym.Convolution(d, kernel=(1, 1), num_filter=16, no_bias=False, name="pw")
    p = mx.sym.BatchNorm(p, fix_gamma=True, eps=1e-5, name="bn2")
    s = mx.sym.Convolution(a, kernel=(1, 1), num_filter=16, no_bias=True, name="shared")
    kept = mx.sym.BatchNorm(s, fix_gamma=False, name="bn3")
    return mx.sym.Pooling(p + kept + s, kernel=(1, 1), global_pool=True, pool_type="avg")


def random_params(symbol, shape):
    rng = np.random.RandomState(0)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=shape)
    args = {n: mx.nd.array(rng.normal(0, 0.5, s)) for n, s in
            zip(symbol.list_arguments(), arg_shapes) if n != "data"}
    auxs = {n: mx.nd.array(rng.uniform(0.2, 2.0, s) if n.endswith("var")
                           else rng.normal(0, 1, s))
            for n, s in zip(symbol.list_auxiliary_states(), aux_shapes)}
    return args, auxs


def run(symbol, args, auxs, x):
    executor = symbol.bind(mx.cpu(), dict(args, data=mx.nd.array(x)), aux_states=auxs)
    return executor.forward(is_train=False)[0].asnumpy()


def test_folded_batchnorm_computes_what_batchnorm_computes():
    shape = (2, 3, 9, 9)
    symbol = small_graph()
    args, auxs = random_params(symbol, shape)
    x = np.random.RandomState(1).uniform(-1, 1, shape).astype(np.float32)
    expected = run(symbol, args, auxs, x)
    folded, fargs, fauxs = fold_batchnorm(symbol, args, auxs)
    got = run(folded, fargs, fauxs, x)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    batchnorms = [n["name"] for n in json.loads(folded.tojson())["nodes"]
                  if n["op"] == "BatchNorm" and n["name"] + "_output"
                  in folded.get_internals().list_outputs()]
    assert batchnorms == ["bn3"]
    # the folded parameters replace BatchNorm's: no stale gamma/moving_mean left to load
    assert set(fargs) == set(folded.list_arguments()) - {"data"}
    assert set(fauxs) == set(folded.list_auxiliary_states()) == {"bn3_moving_mean",
                                                                 "bn3_moving_var"}
