"""Keras 2's moving variance, for models Keras 2 wrote.

Keras 2's ``BatchNormalization`` on a feature map (4-D float input: every BatchNorm of the
Xception base) runs TF's fused kernel, which averages the Bessel-corrected batch variance
(``n / (n - 1)`` times the biased one, ``n`` = batch x height x width) into the moving
variance.  MXNet, Keras 3 and Keras 2's unfused path (vectors, float64) average the biased
one.  For a checkpoint converted from a Keras 2 file, xception-finetune corrects MXNet's
update after each training step's backward pass (where MXNet's oneDNN BatchNorm updates its
moving statistics), as that Keras would have made it: with ``m`` the momentum, MXNet's ``new
= m * old + (1 - m) * biased``, so Keras 2's is ``new + (new - m * old) / (n - 1)``.
"""
from mxnet import autograd

from xception_mx.checkpoint.meta import as_meta
from xception_mx.faults import injected
from xception_mx.model.xception import batchnorm_blocks


def bessel_corrected(new, old, momentum, n):
    """The moving variance Keras 2's fused BatchNorm gives where MXNet's update from ``old``
    gave ``new`` over ``n`` values per channel (numpy or NDArray)."""
    return new + (new - momentum * old) / (n - 1)


def written_by_keras2(meta):
    """Whether the checkpoint (its meta) comes from a file Keras 2 wrote."""
    return str(as_meta(meta).keras_version or "").startswith("2")


def feature_map_batchnorms(net):
    """The BatchNorm blocks of ``net`` that normalise feature maps: the base's (all of plain
    Xception's) and an own model's head's before its pooling or ``Flatten``."""
    if not hasattr(net, "base"):
        return batchnorm_blocks(net)
    heads = list(net.head) + [block for chain in net.branches for block in chain]
    return batchnorm_blocks(net.base) + [block.bn for block in heads
                                         if hasattr(block, "bn") and block.on_feature_map]


class Keras2Variance:
    """Make ``net``'s feature-map BatchNorm layers average the Bessel-corrected batch variance
    into their moving variance, as Keras 2 does: each training-mode forward pass notes the
    moving variance it starts from, and ``apply()``, called after the backward pass (where
    MXNet's oneDNN BatchNorm updates its moving statistics), corrects the update."""

    def __init__(self, net):
        self.blocks, self.pending = feature_map_batchnorms(net), []
        for block in self.blocks:
            block.register_forward_pre_hook(self._before)

    def __len__(self):
        return len(self.blocks)

    def _before(self, block, inputs):
        x = inputs[0]
        if autograd.is_training() and not block._kwargs.get("use_global_stats") and \
                x.size // x.shape[1] > 1:
            self.pending.append((block, x.context, block.running_var.data(x.context).copy(),
                                 x.size // x.shape[1]))

    def apply(self):
        """Correct the updates of the forward and backward passes since the last call."""
        if injected("no-keras2-variance") is not None:
            self.pending = []
        with autograd.pause():
            for block, context, old, n in self.pending:
                new = block.running_var.data(context)
                new[:] = bessel_corrected(new, old, block._kwargs["momentum"], n)
        self.pending = []
