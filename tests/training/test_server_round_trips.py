"""A parameter server's calls cost round trips over a slow link, and each init is a barrier of
every worker: a job's start and each epoch's BatchNorm averaging call the server once for all
their arrays, not once an array (issue 44: one an array took 2 minutes to start a job and 40 s
an epoch over 50 ms links).  Checked on a local kvstore that counts its calls."""
import collections

import mxnet as mx
import numpy as np
from mxnet import gluon

from xception_mx.training.train import broadcast_initial_weights, summed_on_server


class Counting:
    """A kvstore that counts the calls made to it (and passes them on)."""

    def __init__(self, kvstore, num_workers=1):
        self.kvstore, self.num_workers, self.calls = kvstore, num_workers, collections.Counter()

    def __getattr__(self, name):
        method = getattr(self.kvstore, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)
        return counted


def test_the_start_of_a_job_hands_every_worker_rank_0s_weights_in_one_call():
    contexts = [mx.cpu(0), mx.cpu(1)]
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(4, in_units=3), gluon.nn.Dense(2, in_units=4))
    net.initialize(mx.init.Uniform(), ctx=contexts)
    params = net.collect_params()
    for param in params.values():                 # the second copy differs from the first
        param.list_data()[1][:] += 1
    rank_0s = {name: param.list_data()[0].asnumpy() for name, param in params.items()}
    trainer = gluon.Trainer(params, "sgd", kvstore="device")
    trainer._init_kvstore()
    trainer._kvstore = counting = Counting(trainer._kvstore)
    broadcast_initial_weights(trainer)
    assert counting.calls == {"broadcast": 1}
    for name, param in params.items():
        for copy in param.list_data():
            assert np.array_equal(copy.asnumpy(), rank_0s[name]), name
    assert trainer._params_to_init == []


def test_each_epochs_bn_averaging_inits_once_then_pushes_and_pulls_once():
    counting = Counting(mx.kv.create("local"), num_workers=2)
    means = [mx.nd.array(np.arange(n, dtype="float32") + 1) for n in (3, 5, 7)]
    for epoch in (1, 2, 3):
        averaged = summed_on_server(counting, means)
        # one worker pushed here: the server's sum is this worker's, over 2 workers
        for got, pushed in zip(averaged, means):
            np.testing.assert_array_equal(got.asnumpy(), pushed.asnumpy() / 2)
        assert counting.calls == {"init": 1, "push": epoch, "pull": epoch}
