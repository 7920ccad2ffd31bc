"""Fine-tune Xception with Gluon on one or several devices.

Design decisions (see docs/finetune.md):
- Data parallel over ``contexts`` (GPUs, or several CPU contexts as a
  correctness harness) with a kvstore; every context holds the same
  parameters after every step.
- BatchNorm running statistics are updated per context from that context's
  part of the batch; at the end of every epoch they are averaged over the
  contexts and written back to all of them, so evaluation, checkpoints and the
  export see one set: the average.
- BatchNorm statistics are frozen with ``freeze_bn`` (``use_global_stats``:
  the running statistics normalise in training too and stay as they are;
  gamma and beta still train), and while only the head trains
  (``freeze_base_epochs``: the whole network runs in inference mode, as
  Keras runs a non-trainable base).  Running BatchNorm in inference mode while
  gradients flow through it is not an option: MXNet's backward then assumes
  batch statistics and the gradients are wrong.
- Training runs on the plain graph: oneDNN's fused graph folds BatchNorm with
  its running statistics and gives wrong gradients, so fusion is for
  inference and export only.
"""
import collections
import math
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from xception_mx.checkpoint.reading import read_meta, read_params_file
from xception_mx.errors import make_sure
from xception_mx.faults import alter_gradients
from xception_mx.model.xception import HEAD_PREFIX, Xception, set_batchnorm
from xception_mx.progress import progress
from xception_mx.training.distributed.devices import HOROVOD, import_horovod, is_distributed
from xception_mx.training.recipe import keras_optimizers
from xception_mx.training.recipe.optimizers import trainer_arguments
from xception_mx.training.recipe.schedules import learning_rate_at
from xception_mx.training.padded_training import padded_network

def learning_rate(step, steps_per_epoch, epochs, base_lr, warmup_epochs=0.0,
                  schedule="cosine", step_epochs=(), step_factor=0.1, keras_schedule=None):
    """The learning rate at global ``step``: linear warmup, then cosine decay to
    0, a step decay at ``step_epochs``, or ``constant``; ``keras``: ``keras_schedule``'s, a
    Keras schedule (``recipe.schedules``) of the optimizer's step count, as Keras steps it."""
    if schedule == "keras":
        return learning_rate_at(keras_schedule, step)
    epoch = step / float(steps_per_epoch)
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * (step + 1) / (warmup_epochs * steps_per_epoch)
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(epochs - warmup_epochs, 1e-12)
        progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * step_factor ** sum(epoch >= e for e in step_epochs)


def load_pretrained(net, prefix, epoch, num_classes, shapes):
    """Load an Xception checkpoint (``keras2mxnet`` or ``xception-finetune``
    export) into ``net`` (padded as ``shapes``, a ShapeMap, says); the head too
    when its class count matches.

    Returns whether the head was loaded.
    """
    path = "%s-%04d.params" % (prefix, epoch)
    saved = {k.split(":", 1)[-1]: v for k, v in read_params_file(prefix, epoch).items()}
    params = net.collect_params()
    base = [n for n in params.keys() if not n.startswith(HEAD_PREFIX)]
    missing = [n for n in base if n not in saved]
    make_sure(not missing, "%s: not an Xception checkpoint: lacks %s (%d of %d parameters "
              "missing; it has e.g. %s)", path, ", ".join(missing[:3]), len(missing), len(base),
              ", ".join(sorted(saved)[:3]))
    head = saved.get(HEAD_PREFIX + "weight")
    load_head = head is not None and head.shape[0] == num_classes
    chosen = base + ([HEAD_PREFIX + "weight", HEAD_PREFIX + "bias"] if load_head else [])
    shapes.set_values(net, saved, path, chosen)
    return load_head


def initialize(net, contexts, seed):
    """Xavier-initialise ``net`` on ``contexts``, then its head once more from ``seed``
    alone: channel padding changes how many random numbers the base draws, and must not
    change a new head."""
    mx.random.seed(seed)
    np.random.seed(seed)
    net.initialize(mx.init.Xavier(), ctx=contexts)
    mx.random.seed(seed)
    params = net.collect_params()
    for name in net.head_parameter_names():
        params[name].initialize(None, contexts, mx.init.Xavier(), force_reinit=True)


def build_network(num_classes, input_size, contexts, pretrained=None, pretrained_epoch=0,
                  seed=0, frozen_bn=False, channel_block=None):
    """``(net, head_loaded, shapes)``: Xception with a ``num_classes`` head
    (logits), its channels padded to ``channel_block`` (see padded_training),
    initialised on ``contexts`` from ``pretrained`` where given (its BatchNorm settings
    too); a new head is Xavier-initialised (seeded)."""
    net, shapes = padded_network(lambda block: Xception(
        classes=num_classes, classifier_activation=None, input_shape=input_size,
        frozen_bn=frozen_bn, channel_block=block), channel_block)
    initialize(net, contexts, seed)
    head_loaded = False
    if pretrained:
        set_batchnorm(net, read_meta(pretrained).batchnorm)
        head_loaded = load_pretrained(net, pretrained, pretrained_epoch, num_classes, shapes)
    return net, head_loaded, shapes


def trainable_params(net, head_only, frozen=()):
    """Choose what trains: all differentiable parameters, or the head's only
    (the others get ``grad_req='null'``, which the Trainer skips), never those named in
    ``frozen``.  Returns all differentiable parameters: one Trainer over them serves both
    phases, since a parameter server cannot register a second Trainer's parameters."""
    chosen, head, frozen = {}, set(net.head_parameter_names()), set(frozen)
    for name, param in net.collect_params().items():
        if not param._differentiable:
            continue
        train = (not head_only or name in head) and name not in frozen
        param.grad_req = "write" if train else "null"     # a no-op when unchanged
        chosen[name] = param
    return chosen


def make_trainer(params, optimizer, kvstore, amp=False):
    """A Gluon Trainer.  Updates happen on the workers (``update_on_kvstore``
    off) with AMP, where MXNet checks for overflow, and on a parameter server,
    so that trainer states can be saved by the workers.  On a parameter server
    every worker starts from rank 0's weights: Gluon would only pull them
    inside the first step, after the first forward pass.

    With Horovod, rank 0's weights are broadcast likewise, and gradients are
    summed over the workers (Horovod averages; ``rescale_grad`` undoes that), so
    that ``lr`` means what it means on a parameter server.

    ``optimizer``: an ``optimizers.Optimizer`` (``resolve_optimizer``)."""
    global_norm = bool(optimizer.settings.get("global_clipnorm"))
    optimizer, options = trainer_arguments(optimizer)
    if kvstore == HOROVOD:
        hvd = import_horovod()
        options["rescale_grad"] = float(hvd.size())
        trainer = hvd.DistributedTrainer(params, optimizer, options)
        hvd.broadcast_parameters(params, root_rank=0)
        # Horovod 0.28 only enqueues the broadcasts; wait for them (as its earlier releases
        # did), so that no rank loads states or starts a step while they are in flight
        mx.nd.waitall()
        return trainer
    local_update = amp or is_distributed(kvstore) or global_norm    # see keras_optimizers.step
    trainer = gluon.Trainer(params, optimizer, options, kvstore=kvstore,
                            update_on_kvstore=False if local_update else None)
    if is_distributed(kvstore):
        trainer._init_kvstore()
        broadcast_initial_weights(trainer)
    return trainer


def broadcast_initial_weights(trainer):
    """Rank 0's values of every parameter on every worker (kvstore.init + pull), in one call:
    Gluon's ``_init_params`` makes a call a parameter, and the server's init is a barrier
    of every worker, a round trip each (2 minutes at the start of a job over a 50 ms link)."""
    params = trainer._params_to_init
    if any(p._deferred_init or p._stype != "default" for p in params):
        return trainer._init_params()
    arrays = [p._check_and_get(p._data, list) for p in params]
    trainer._kvstore.broadcast([trainer._param2idx[p.name] for p in params],
                               [copies[0] for copies in arrays], out=arrays)
    trainer._params_to_init = []


def forward_backward(net, loss_fn, data, label, contexts, train_mode=True, amp_trainer=None,
                     regularization=None):
    """Forward and backward of the global batch ``data``/``label`` (NDArrays on
    the CPU) split evenly over ``contexts``: each context's gradients are those
    of its share.  Returns the per-context losses and outputs.  With
    ``amp_trainer`` the losses are scaled for mixed precision; with ``regularization``
    (``recipe.regularization.Regularization``) each loss carries its share of Keras'
    regularization losses."""
    xs = gluon.utils.split_and_load(data, contexts, even_split=True)
    ys = gluon.utils.split_and_load(label, contexts, even_split=True)
    with autograd.record(train_mode=train_mode):
        outputs = [net(x) for x in xs]
        losses = [loss_fn(o, y) for o, y in zip(outputs, ys)]
        if regularization is not None:
            losses = [regularization.per_sample(l, c) for l, c in zip(losses, contexts)]
        if amp_trainer is not None:
            # the scaled losses must be recorded too: scaled outside record(), they are not
            # in the graph and backward fails ("not in a computational graph")
            from mxnet.contrib import amp as mx_amp
            with mx_amp.scale_loss(losses, amp_trainer) as scaled:
                losses_to_differentiate = scaled
        else:
            losses_to_differentiate = losses
    autograd.backward(losses_to_differentiate)
    alter_gradients(net)
    return losses, outputs


def train_step(net, trainer, loss_fn, data, label, contexts, train_mode=True, amp=False,
               shapes=None, after_backward=None, regularization=None):
    """One data-parallel step over the global batch ``data``/``label`` (NDArrays
    on the CPU); returns the per-sample losses and outputs (numpy).

    ``train_mode=False`` runs every layer in inference mode; use it only when
    no parameter below a BatchNorm trains (the head-only phase): MXNet's
    BatchNorm backward is wrong in inference mode.  Frozen statistics for a
    whole network come from ``Xception(frozen_bn=True)`` instead.
    ``shapes``: the ShapeMap of a channel-padded network, whose padded slices
    must not move (their gradients are masked before the update).  ``after_backward()`` runs
    between the backward pass and the update.
    """
    losses, outputs = forward_backward(net, loss_fn, data, label, contexts, train_mode,
                                       trainer if amp else None, regularization)
    if after_backward is not None:
        after_backward()
    if shapes:
        shapes.mask_gradients(net)
    keras_optimizers.step(trainer, data.shape[0])
    return (np.concatenate([l.astype("float32").asnumpy() for l in losses]),
            np.concatenate([o.astype("float32").asnumpy() for o in outputs]))


BN_STAT_KEY_BASE = 1 << 20    # kvstore keys for BN statistics, clear of the Trainer's


def summed_on_server(kvstore, means):
    """The workers' mean of each array of ``means``, through the parameter server: one
    init, push and pull for all of them (the server's init is a barrier of every worker:
    one a key cost a round trip each, 40 s an epoch over a 50 ms link)."""
    keys = [BN_STAT_KEY_BASE + i for i in range(len(means))]
    if not getattr(kvstore, "_xmx_bn_keys", None) == keys:
        kvstore.init(keys, [mx.nd.zeros_like(m) for m in means])
        kvstore._xmx_bn_keys = keys
    kvstore.push(keys, means)
    totals = [mx.nd.zeros_like(m) for m in means]
    kvstore.pull(keys, out=totals)
    return [t / kvstore.num_workers for t in totals]


def average_bn_statistics(net, contexts, kvstore=None):
    """Set every context's (and, with a parameter server or Horovod, every
    worker's) BN running mean/variance to their mean."""
    distributed = kvstore is not None and is_distributed(kvstore)
    hvd = import_horovod() if kvstore == HOROVOD else None
    horovod = hvd is not None and hvd.size() > 1
    if len(contexts) < 2 and not distributed and not horovod:
        return
    stats = [p for n, p in sorted(net.collect_params().items())
             if n.endswith(("_running_mean", "_running_var"))]
    means = [sum(c.as_in_context(mx.cpu()) for c in copies) / len(copies)
             for copies in (param.list_data() for param in stats)]
    if distributed:
        means = summed_on_server(kvstore, means)
    elif horovod:
        means = [hvd.allreduce(m, average=True, name="bn_statistic_%d" % i)
                 for i, m in enumerate(means)]
    for param, mean in zip(stats, means):
        param.set_data(mean)
    if distributed or horovod:
        # Pushes, pulls and allreduces are asynchronous: a worker that went on
        # without waiting (no validation to run, the last epoch) could exit
        # with its share still queued, and the others would wait for it forever
        mx.nd.waitall()


Counts = collections.namedtuple("Counts", "loss top1 topk n")


def count_correct(outputs, labels, k):
    """Top-1 and top-k hits of a batch of logits (of a binary head's one logit: class 1 where
    it is positive, and every sample a top-2 hit, as of two classes; of a multi-label head's,
    each sample's share of labels right (Keras' binary accuracy at 0.5) and whether all
    are)."""
    if outputs.shape[1] == 1:
        return int(((outputs[:, 0] > 0) == (labels > 0.5)).sum()), len(labels)
    if labels.ndim == 2:            # multi-label: Keras' binary accuracy, and exact matches
        right = (outputs > 0) == (labels > 0.5)
        return float(right.mean(axis=1).sum()), int(right.all(axis=1).sum())
    order = np.argsort(-outputs, axis=1)[:, :k]
    labels = labels.astype(np.int64)
    return int((order[:, 0] == labels).sum()), int((order == labels[:, None]).any(axis=1).sum())


def evaluate(net, loader, loss_fn, contexts, k, regularization=None):
    """Mean loss (with ``regularization``, Keras' regularization losses too, as Keras'
    ``val_loss``), top-1 and top-k accuracy over a loader (inference mode)."""
    loss_sum = top1 = topk = n = 0
    for data, label in progress(loader, total=len(loader), unit="batch", desc="validation"):
        used = contexts[:max(1, min(len(contexts), data.shape[0]))]
        xs = gluon.utils.split_and_load(data, used, even_split=False)
        ys = gluon.utils.split_and_load(label, used, even_split=False)
        outputs = [net(x) for x in xs]
        losses = [loss_fn(o, y) for o, y in zip(outputs, ys)]
        if regularization is not None:
            losses = [regularization.per_sample(l, c) for l, c in zip(losses, used)]
        out = np.concatenate([o.astype("float32").asnumpy() for o in outputs])
        lab = np.concatenate([y.asnumpy() for y in ys])
        loss_sum += float(sum(l.sum().asscalar() for l in losses))
        hits1, hitsk = count_correct(out, lab, k)
        top1, topk, n = top1 + hits1, topk + hitsk, n + len(lab)
    return Counts(loss_sum / max(n, 1), top1 / max(n, 1), topk / max(n, 1), n)


class Throughput:
    """Images per second over an epoch, for the progress bar and the CSV."""

    def __init__(self):
        self.start, self.images = time.perf_counter(), 0

    def add(self, n):
        self.images += n

    @property
    def rate(self):
        return self.images / max(time.perf_counter() - self.start, 1e-9)
