"""Keras layers that act only while the model trains: the stochastic regularisers a head may
hold (``Dropout`` and its kin, ``regularizers.py``) and the random augmentation layers before
the base (``RandomFlip``, ``RandomRotation``..., ``augmentation.py``).

They are in the network description (``spec``) as head entries (``{"class": "Dropout", ...}``)
and preprocessing operations (``{"op": "random_flip", ...}``).  At inference, in a symbol (the
checkpoint's ``-symbol.json``, the fast paths, exports) and while switched off
(``set_training_layers``) they compute the identity; they draw their randomness from MXNet's
generator, which ``xception-finetune`` seeds at every step (``seed_step``), so that a run and
its resume draw the same numbers.
"""
import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import HybridBlock

REGULARIZER_CLASSES = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                       "AlphaDropout")
AUGMENTATION_OPS = ("random_flip", "random_rotation", "random_zoom", "random_translation",
                    "random_contrast", "random_brightness")


def is_training_only(entry):
    """Whether a head entry or a preprocessing operation acts only in training."""
    return entry.get("class") in REGULARIZER_CLASSES or entry.get("op") in AUGMENTATION_OPS


def inference_layers(entries):
    """``entries`` without those that act only in training."""
    return [e for e in entries if not is_training_only(e)]


def inference_spec(spec):
    """``spec`` as inference sees it: without the layers that act only in training (which
    checkpoints written before they were recorded do not list)."""
    out = dict(spec, preprocess=inference_layers(spec["preprocess"]),
               head=inference_layers(spec["head"]))
    if spec.get("branches"):
        out["branches"] = [dict(b, layers=inference_layers(b["layers"]))
                           for b in spec["branches"]]
    return out


def augments(spec):
    """The names of an own model's ``spec``'s own augmentation layers (``[]``: none, or plain
    Xception)."""
    return [op.get("name") for op in (spec or {}).get("preprocess", [])
            if op["op"] in AUGMENTATION_OPS]


class TrainingOnly(HybridBlock):
    """A layer that acts only in imperative training (``autograd.is_training()``) while
    ``active``; the identity otherwise, and absent from symbols."""

    active = True

    def acting(self, F):
        return F is mx.nd and self.active and autograd.is_training()


def set_training_layers(net, active):
    """Switch every training-only layer of ``net`` on or off (off: the step comparison, which
    compares the deterministic part of a training step)."""
    net.apply(lambda block: setattr(block, "active", active)
              if isinstance(block, TrainingOnly) else None)


def step_seed(seed, epoch, step, rank=0):
    """The seed of MXNet's generator for one training step of one worker."""
    return int(np.random.SeedSequence([seed, epoch, step, rank, 11]).generate_state(1)[0]
               % (1 << 31))


def seed_step(seed, epoch, step, contexts, rank=0):
    """Seed MXNet's generator on every context for step ``step`` of ``epoch`` (each context
    its own seed), so that the training-only layers draw the same numbers in a run and in
    its resume."""
    base = step_seed(seed, epoch, step, rank)
    for i, context in enumerate(contexts):
        mx.random.seed(base + i, ctx=context)
