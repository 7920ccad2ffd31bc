"""Fine-tuning stays data-parallel-consistent on several devices: gradients summed over
four CPU contexts, parameters kept identical on each, BatchNorm statistics averaged.  The
checkpoint is the ``work`` fixture's (conftest.py)."""
import mxnet as mx
import numpy as np
from mxnet import gluon

from rounding import assert_within_rounding, deviation
from xception_mx.training.recipe.optimizers import resolve_optimizer
from xception_mx.training.train import (build_network, forward_backward, make_trainer, train_step,
                                        trainable_params)


def _nets(pretrained, contexts_list, frozen_bn=False):
    return [build_network(3, (71, 71), ctxs, pretrained, frozen_bn=frozen_bn)[0]
            for ctxs in contexts_list]


FOUR = [mx.cpu(i) for i in range(4)]


ONE = [mx.cpu(0)]


SLICED = [mx.cpu(0)] * 4          # one device fed the batch in the 4 contexts' slices


REVERSED = mx.nd.array(np.arange(7, -1, -1))


def _quartet(pretrained):
    """The converted checkpoint with BN statistics frozen, four times: on 4 CPU contexts, and
    on 1 context three times, to be fed each batch whole, in reverse order, and in 4 slices
    of 2 (the gradients summed on the one device)."""
    nets = _nets(pretrained, [FOUR, ONE, ONE, ONE], frozen_bn=True)
    for net in nets[1:]:                                   # the same new head on all
        for name, param in net.collect_params().items():
            param.set_data(nets[0].collect_params()[name].data(mx.cpu(0)))
    return nets


# How each of the three one-context runs is fed: the reference, and two evaluations of the
# same sum that differ from it by rounding alone.  The reversed batch changes the order of the
# batch's sum; the slices make oneDNN run batches of 2 instead of 8, with other kernels or
# blockings and so other rounding in every sample's forward and backward, which the 4
# contexts' slices of 2 have too.  Measured under three oneDNN ISAs on an AMD EPYC (all,
# AVX512_MIC, AVX2; AVX2 stands in for another CPU's kernels): the sliced run is the larger
# measure, and under AVX2 the 4 contexts were 13x the reversed batch's deviation (issue #14's
# failure on an Intel Xeon), within 2x of the sliced run's.
FEEDS = ((ONE, False), (ONE, True), (SLICED, False))


def _batch(rng):
    return (mx.nd.array(rng.uniform(-1, 1, (8, 3, 71, 71)).astype(np.float32)),
            mx.nd.array(rng.randint(0, 3, 8).astype(np.float32)))


def _fed(feed, data, label):
    contexts, reverse = feed
    return (data[REVERSED], label[REVERSED], contexts) if reverse else (data, label, contexts)


def _summed_gradients(net, data, label, contexts):
    forward_backward(net, gluon.loss.SoftmaxCrossEntropyLoss(), data, label, contexts)
    return {name: sum(g.asnumpy() for g in param.list_grad())
            for name, param in net.collect_params().items() if param.grad_req != "null"}


def test_gradients_on_four_cpu_contexts_sum_to_the_one_context_gradient(work):
    multi, *singles = _quartet(str(work / "x71"))
    data, label = _batch(np.random.RandomState(0))
    reference, *others = [_summed_gradients(net, *_fed(feed, data, label))
                          for net, feed in zip(singles, FEEDS)]
    summed = _summed_gradients(multi, data, label, FOUR)
    rounding = max(deviation(other, reference) for other in others)
    print("gradients: deviation 4 contexts %.3g, rounding %.3g"
          % (deviation(summed, reference), rounding))
    assert sorted(summed) == sorted(reference)
    assert_within_rounding(deviation(summed, reference), rounding, "gradients")


def test_four_cpu_contexts_keep_parameters_identical_and_match_one_context(work):
    nets = _quartet(str(work / "x71"))
    multi, singles = nets[0], nets[1:]
    start = {name: p.data(mx.cpu(0)).asnumpy() for name, p in multi.collect_params().items()}
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainers = [make_trainer(trainable_params(net, False),
                             resolve_optimizer("nag", 0.005, {"momentum": 0.9, "wd": 1e-4}),
                             "device")
                for net in nets]
    rng = np.random.RandomState(0)
    for step in range(2):          # the second step carries momentum
        data, label = _batch(rng)
        train_step(multi, trainers[0], loss_fn, data, label, FOUR)
        for net, trainer, feed in zip(singles, trainers[1:], FEEDS):
            train_step(net, trainer, loss_fn, *_fed(feed, data, label))
        for name, param in multi.collect_params().items():
            copies = [c.asnumpy() for c in param.list_data()]
            for copy in copies[1:]:
                assert np.array_equal(copy, copies[0]), (step, name)
        values = [{n: p.data(mx.cpu(0)).asnumpy() for n, p in net.collect_params().items()}
                  for net in nets]
        multi_values, reference, *others = values
        rounding = max(deviation(other, reference, start) for other in others)
        print("step %d: deviation 4 contexts %.3g, reversed batch %.3g, slices %.3g"
              % (step, deviation(multi_values, reference, start),
                 *[deviation(other, reference, start) for other in others]))
        assert_within_rounding(deviation(multi_values, reference, start), rounding,
                               "parameters after step %d" % step)
    moved = values[0]["predictions_weight"]
    assert np.abs(moved - start["predictions_weight"]).max() > 1e-4


def test_bn_statistics_are_averaged_over_contexts(work):
    from xception_mx.training.train import average_bn_statistics
    two = [mx.cpu(0), mx.cpu(1)]
    net = _nets(str(work / "x71"), [two])[0]
    trainer = make_trainer(trainable_params(net, False),
                           resolve_optimizer("sgd", 0.01, {"momentum": 0.0, "wd": 0.0}), "device")
    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (4, 3, 71, 71)).astype(np.float32))
    train_step(net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(), x, mx.nd.array([0, 1, 2, 0]),
               two)
    param = net.collect_params()["block4_sepconv1_bn_running_mean"]
    a, b = [c.asnumpy() for c in param.list_data()]
    assert np.abs(a - b).max() > 0          # each context saw its own half-batch
    average_bn_statistics(net, two)
    a2, b2 = [c.asnumpy() for c in param.list_data()]
    np.testing.assert_array_equal(a2, b2)
    np.testing.assert_allclose(a2, (a + b) / 2, rtol=1e-6)
