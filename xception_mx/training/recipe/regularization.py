"""Keras' weight and activity regularizers, added to the training loss as Keras adds them.

keras2mxnet records each layer's ``kernel_``, ``bias_``, ``depthwise_``, ``pointwise_`` and
``activity_regularizer`` as the file saved them (the meta's ``regularizers``); here they act:

- a weight regularizer adds ``l1 * sum(|w|) + l2 * sum(w^2)`` to the loss (``L1``, ``L2``,
  ``L1L2``), for the weights that train (Keras 3 counts only trainable weights in the loss it
  reports; Keras 2 counts every regularized weight, ``keras2``);
- an activity regularizer adds the same of the layer's output, divided by the batch size (as
  Keras normalises it), on a head layer (in a head's last ``Dense``, of its own activation,
  which the training network leaves out).

The data-parallel step differentiates, per device, the sum of its samples' losses plus its
share of the batch times the weight penalty plus the activity penalty of its outputs: summed
over the devices and divided by the batch, that is the gradient of Keras' loss."""
import collections
import functools
import operator

import mxnet as mx
import numpy as np

from xception_mx.errors import InputError
from xception_mx.faults import injected
from xception_mx.model.head_layers import ACTIVATIONS, HeadLayer
from xception_mx.training.keras2_statistics import written_by_keras2

ROLE_OF_KEY = {"kernel_regularizer": "kernel", "bias_regularizer": "bias",
               "depthwise_regularizer": "depthwise_kernel",
               "pointwise_regularizer": "pointwise_kernel"}
# Keras' classes and names -> their arguments' defaults (Keras 3 and tf-keras: 0.01)
CLASSES = {"L1": {"l1": 0.01}, "L2": {"l2": 0.01}, "L1L2": {"l1": 0.0, "l2": 0.0},
           "l1": {"l1": 0.01}, "l2": {"l2": 0.01}, "l1_l2": {"l1": 0.01, "l2": 0.01}}

Penalty = collections.namedtuple("Penalty", "layer key target l1 l2")
Penalty.__doc__ = """One regularizer: the Keras layer, which of its regularizers (``key``),
what it acts on (``target``: an MXNet parameter, or the layer for an activity regularizer),
and its factors."""


def _factors(entry, layer, key, where):
    cls = str(entry.get("class_name")).split(">")[-1]
    if cls not in CLASSES:
        raise InputError("%s: layer '%s': %s %s is not supported (supported: L1, L2, L1L2); "
                         "--regularizers none trains without the file's regularizers"
                         % (where, layer, key, cls))
    config = dict(CLASSES[cls], **{k: v for k, v in (entry.get("config") or {}).items()
                                   if k in ("l1", "l2")})
    # Keras holds the factors in float32 (tf-keras' cast_to_floatx; Keras 3 casts the Python
    # float to a float32 tensor, then to the weight's type), whatever the weights' type
    return tuple(float(np.float32(config.get(k) or 0.0)) for k in ("l1", "l2"))


def read_regularizers(saved, name_table, head_layers, where):
    """The ``Penalty`` list of a meta's ``regularizers``: weight ones by the name table's
    MXNet parameter; activity ones on ``head_layers`` (names) only."""
    params = {(r["keras_layer"], r["keras_weight"]): r["mxnet_param"] for r in name_table or []}
    found = []
    for layer, given in sorted(saved.items()):
        for key, entry in sorted(given.items()):
            l1, l2 = _factors(entry, layer, key, where)
            if not (l1 or l2):
                continue
            if key == "activity_regularizer":
                if layer not in head_layers:
                    raise InputError("%s: layer '%s': an activity_regularizer in the base is not "
                                     "supported; --regularizers none trains without the file's "
                                     "regularizers" % (where, layer))
                found.append(Penalty(layer, key, layer, l1, l2))
            elif (layer, ROLE_OF_KEY[key]) in params:
                found.append(Penalty(layer, key, params[(layer, ROLE_OF_KEY[key])], l1, l2))
    return found


def file_regularization(net, meta, export_spec, where):
    """The ``Regularization`` of a training network ``net`` by the regularizers ``meta``
    recorded (activity ones on the layers of ``export_spec``'s head, an own model's), or
    ``None`` when it has none that acts."""
    head = export_spec["head"] if export_spec else []
    penalties = read_regularizers(meta.regularizers or {}, meta.name_table,
                                  {layer["name"] for layer in head}, where)
    if not penalties:
        return None
    return Regularization(net, penalties, head, written_by_keras2(meta))


def _total(terms):
    """The sum of ``terms`` (NDArrays), or ``None`` for none."""
    terms = list(terms)
    return functools.reduce(operator.add, terms) if terms else None


def _amount(x, l1, l2):
    return _total(([l1 * mx.nd.sum(mx.nd.abs(x))] if l1 else []) +
                  ([l2 * mx.nd.sum(mx.nd.square(x))] if l2 else []))


class Regularization:
    """The regularization of a training network: ``weights(context)`` the weight penalty on
    one device's copy, ``activities(context)`` the activity penalty of the outputs its last
    forward pass recorded.  ``keras2``: count every regularized weight in the loss reported
    (Keras 2), not only those that train (Keras 3)."""

    def __init__(self, net, penalties, export_head=(), keras2=False):
        self.penalties = penalties
        self.params = net.collect_params()
        self.weight_penalties = [p for p in penalties if p.key != "activity_regularizer"]
        self.keras2, self.outputs = keras2, collections.defaultdict(list)
        activation = {layer["name"]: layer.get("activation") for layer in export_head}
        blocks = {}
        net.apply(lambda block: blocks.setdefault(block.prefix[:-1], block)
                  if isinstance(block, HeadLayer) else None)
        for penalty in penalties:
            if penalty.key == "activity_regularizer":
                blocks[penalty.layer].register_forward_hook(self._recorder(
                    penalty, activation.get(penalty.layer)))

    def _recorder(self, penalty, activation):
        def record(block, inputs, output):
            if block.layer.get("activation") != activation and activation:
                output = ACTIVATIONS[activation](mx.nd, output)   # the head's last Dense
            self.outputs[output.context].append((penalty, output))
        return record

    def describe(self):
        return ", ".join("%s %s (l1 %g, l2 %g)" % (p.layer, p.key, p.l1, p.l2)
                         for p in self.penalties)

    def weights(self, context):
        """The weight penalty on ``context``: of the weights that train, and with Keras 2 of
        the frozen ones too (a constant, in the loss Keras 2 reports)."""
        return _total(_amount(self.params[p.target].data(context), p.l1, p.l2)
                      for p in self.weight_penalties
                      if self.keras2 or self.params[p.target].grad_req != "null")

    def activities(self, context):
        """The activity penalty of the outputs recorded on ``context`` (then forgotten)."""
        return _total(_amount(output, penalty.l1, penalty.l2)
                      for penalty, output in self.outputs.pop(context, []))

    def per_sample(self, losses, context):
        """``losses`` (one device's per-sample losses) with the regularization spread over
        them: each plus the weight penalty plus the device's activity penalty over its
        samples (their mean is Keras' loss; their gradient, Keras' times the samples)."""
        weights, activities = self.weights(context), self.activities(context)
        if injected("drop-regularizers") is not None:
            return losses
        if weights is not None:
            losses = losses + weights
        if activities is not None:
            losses = losses + activities / losses.shape[0]
        return losses
