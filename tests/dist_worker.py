"""A worker of the distributed tests (run under xception-launch): two data-parallel
steps on its shard of a fixed batch, then its parameters to OUT/rank<R>.params;
it prints its rank and pid on joining, and the OMP_NUM_THREADS it was given.
With ``die`` as argument, rank 1 kills itself after joining the job."""
import os
import signal
import sys

THREADS = os.environ.get("OMP_NUM_THREADS")     # as the launcher passed it

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import gluon  # noqa: E402

from xception_mx.train import build_network, make_trainer, train_step, trainable_params  # noqa

pretrained, out = sys.argv[1], sys.argv[2]
kv = mx.kv.create("dist_sync")
print("rank %d pid %d" % (kv.rank, os.getpid()), flush=True)
net, _ = build_network(3, (71, 71), [mx.cpu()], pretrained, seed=kv.rank, frozen_bn=True)
trainer = make_trainer(trainable_params(net, False), "nag", 0.001, 0.9, 0.0, kv)
if len(sys.argv) > 3 and sys.argv[3] == "die" and kv.rank == 1:
    os.kill(os.getpid(), signal.SIGKILL)
rng = np.random.RandomState(0)
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
for step in range(2):
    x = rng.uniform(-1, 1, (8, 3, 71, 71)).astype(np.float32)
    y = rng.randint(0, 3, 8).astype(np.float32)
    shard = slice(4 * kv.rank, 4 * kv.rank + 4)
    train_step(net, trainer, loss_fn, mx.nd.array(x[shard]), mx.nd.array(y[shard]), [mx.cpu()])
net.collect_params().save(os.path.join(out, "rank%d.params" % kv.rank))
print("rank %d done (OMP_NUM_THREADS=%s)" % (kv.rank, THREADS))
