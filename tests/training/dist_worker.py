"""A worker of the distributed tests (``dist_worker.py BACKEND PRETRAINED OUT
[die]``, BACKEND dist_sync under xception-launch or horovod under horovodrun):
two data-parallel steps on its shard of a fixed batch, then its parameters to
OUT/rank<R>.params; it prints its rank and pid on joining, and the
OMP_NUM_THREADS it was given.  With ``die``, rank 1 kills itself after joining."""
import os
import signal
import sys

THREADS = os.environ.get("OMP_NUM_THREADS")     # as the launcher passed it

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import xception_mx  # noqa: E402,F401  (before MXNet: its thread count)
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import gluon  # noqa: E402

from xception_mx.training.distributed.devices import join_job  # noqa
from xception_mx.training.recipe.optimizers import resolve_optimizer  # noqa: E402
from xception_mx.training.train import (build_network, make_trainer, train_step,  # noqa
                                        trainable_params)

backend, pretrained, out = sys.argv[1:4]
job = join_job(backend)
print("rank %d pid %d" % (job.rank, os.getpid()), flush=True)
# a seed per rank: equal parameters at the end prove that rank 0's were shared
net, _, _ = build_network(3, (71, 71), [mx.cpu()], pretrained, seed=job.rank, frozen_bn=True)
trainer = make_trainer(trainable_params(net, False),
                       resolve_optimizer("nag", 0.001, {"momentum": 0.9, "wd": 0.0}), job.kvstore)
if sys.argv[4:] == ["die"] and job.rank == 1:
    os.kill(os.getpid(), signal.SIGKILL)
rng = np.random.RandomState(0)
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
for step in range(2):
    x = rng.uniform(-1, 1, (8, 3, 71, 71)).astype(np.float32)
    y = rng.randint(0, 3, 8).astype(np.float32)
    shard = slice(4 * job.rank, 4 * job.rank + 4)
    train_step(net, trainer, loss_fn, mx.nd.array(x[shard]), mx.nd.array(y[shard]), [mx.cpu()])
net.collect_params().save(os.path.join(out, "rank%d.params" % job.rank))
print("rank %d done (OMP_NUM_THREADS=%s)" % (job.rank, THREADS))
