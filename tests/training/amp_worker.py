"""One training step through MXNet's AMP machinery on two CPU contexts (a process of its own:
``amp.init`` patches MXNet's operators for the whole process).

bfloat16 is AMP's CPU type (float16 has no CPU kernels: "FP16 gemm on cpu not implemented");
the loss scaler, ``scale_loss`` and the trainer's unscaling are the code a GPU run goes
through.  Prints the largest change of the first convolution's weight and the loss scale.
"""
import sys

import xception_mx  # noqa: F401  (before MXNet: threads)
import mxnet as mx
from mxnet import gluon
from mxnet.contrib import amp

from xception_mx.model.xception import Xception
from xception_mx.training.recipe.optimizers import resolve_optimizer
from xception_mx.training.train import make_trainer, train_step

amp.init(target_dtype="bfloat16")
contexts = [mx.cpu(0), mx.cpu(1)]
net = Xception(classes=3, input_shape=(71, 71))
net.initialize(mx.init.Xavier(), ctx=contexts)
trainer = make_trainer(net.collect_params(),
                       resolve_optimizer("nag", 0.01, {"momentum": 0.9, "wd": 1e-4}), "device",
                       amp=True)
amp.init_trainer(trainer)
before = net.collect_params()["block1_conv1_weight"].data(contexts[0]).copy()
data = mx.nd.random.uniform(-1, 1, (4, 3, 71, 71), ctx=mx.cpu())
label = mx.nd.array([0, 1, 2, 0])
losses, _ = train_step(net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(), data, label,
                       contexts, amp=True)
after = net.collect_params()["block1_conv1_weight"].data(contexts[0])
print("moved %g loss %g scale %g" % ((after - before).abs().max().asscalar(), losses.mean(),
                                     trainer._amp_loss_scaler.loss_scale))
sys.exit(0)
