"""The pieces of ``xception-parity --training``: one training step of a checkpoint in MXNet,
as ``xception-finetune`` takes it, against the same step of the Keras model in Keras (what is
compared and how closely: ``training_compare``; with which loss and optimizers:
``training_recipe``).

Both sides get the same batch (the checkpoint's input convention) and labels, and start from
the same weights.  The Keras model the comparison trains outputs the logits of the
classifier's last ``Dense`` (made linear; what follows it dropped, ``keras_training_model``):
Keras' losses take a softmax's or sigmoid's logits as the MXNet side does.  Layers that are
the identity at inference (``Dropout``, ``GaussianNoise``, augmentation) are replaced by
``Identity``: the checkpoint does not hold them, so the comparison is of everything else.
How far a float32 evaluation may stray is measured in the same run: Keras' float32 step
against the same model computing in float64 (``float64_twin``).
"""
import collections
import functools

import mxnet as mx
import numpy as np

from xception_mx.conversion import layouts
from xception_mx.conversion.own_model.keras_config import MODEL_CLASSES
from xception_mx.keras_side import replace_policies
from xception_mx.model.head_layers import IDENTITY_LAYERS


StepRecord = collections.namedtuple("StepRecord", "what keras_layer deviation rounding tolerance")
StepRecord.__doc__ = """One compared quantity: ``what`` (loss, logits, gradient, moving_mean,
moving_variance, or an optimizer's name), the Keras layer (``None`` for the loss and logits),
the deviation (relative: ||mxnet - keras|| / ||keras||, or for weights after a step / how far
Keras' step moved them), Keras' own float32 rounding of it measured the same way (against its
float64 twin), and the tolerance applied."""

ROUNDING_FACTOR = 10.0
FLOOR_SHARE = 0.1     # a layer's rounding is at least this share of its kind's median


def relative(a, b, scale=None):
    """||a - b|| / ||scale or b|| (0 when both are 0)."""
    norm = float(np.linalg.norm(scale if scale is not None else b))
    diff = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
    return diff / norm if norm > 0 else (0.0 if diff == 0 else np.inf)


def _identity_config(layer):
    cfg = layer.get("config", {})
    keep = {k: cfg[k] for k in ("name", "trainable", "dtype") if k in cfg}
    return dict(layer, class_name="Identity", config=keep,
                **({"module": "keras.layers"} if "module" in layer else {}))


def without_stochastic_layers(config):
    """A model config with every layer that is the identity at inference (nested models'
    too) replaced by ``Identity``; returns the names replaced."""
    replaced = []

    def walk(model):
        layers = (model.get("config") or {}).get("layers") or []
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict):
                continue
            if layer.get("class_name") in IDENTITY_LAYERS:
                replaced.append(layer.get("config", {}).get("name"))
                layers[i] = _identity_config(layer)
            elif layer.get("class_name") in MODEL_CLASSES:
                walk(layer)
    walk(config)
    return replaced


def copy_weights(source, target):
    """Weights of ``source``'s layers into ``target``'s layers of the same names."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def keras_variable_role(variable):
    """``kernel``, ``gamma``, ``moving_mean``...: a Keras 3 or tf-keras variable's own name."""
    return getattr(variable, "name", "").split("/")[-1].split(":")[0]


def keras_rows(rows):
    """``{(canonical Keras layer, weight role): (MXNet parameter, layout transform)}``."""
    return {(r["keras_layer"], r["keras_weight"]): (r["mxnet_param"], r["transform"])
            for r in rows}


def to_keras_layout(value, transform):
    """An MXNet array (a parameter or its gradient) in Keras' layout."""
    return layouts.INVERSE[transform](np.asarray(value))


def mxnet_values(net, kind="data"):
    """``{parameter name: numpy}`` of ``net``'s parameters (``kind``: data or grad)."""
    out = {}
    for name, param in net.collect_params().items():
        if kind == "grad" and param.grad_req == "null":
            continue
        out[name] = (param.grad() if kind == "grad" else param.data()).asnumpy()
    return out


def set_mxnet_values(net, values):
    for name, param in net.collect_params().items():
        if name in values:
            param.set_data(mx.nd.array(values[name]))


def keras_library(model):
    """The Keras library a model is of: ``keras`` (3) or ``tf_keras`` (2)."""
    import importlib
    return importlib.import_module(type(model).__module__.split(".")[0])


def keras_training_model(model, last_dense):
    """The Keras model as the comparison trains it: its stochastic layers replaced by
    ``Identity`` and its output the logits of ``last_dense`` (the classifier's last ``Dense``,
    made linear; what follows it dropped), with ``model``'s weights.  ``(model, replaced)``."""
    config = model.get_config()
    replaced = without_stochastic_layers({"config": config})
    layers = config.get("layers") or []
    for layer in layers:
        if layer.get("config", {}).get("name") == last_dense:
            layer["config"]["activation"] = "linear"
    rebuilt = type(model).from_config(config)
    copy_weights(model, rebuilt)
    output = rebuilt.get_layer(last_dense).output
    return keras_library(model).Model(rebuilt.inputs, output), replaced


def keras_step(model, x_nchw, labels, loss_fn, optimizer=None):
    """One training step of ``model`` in Keras: ``(loss, logits, {variable id: gradient})``,
    the logits and loss in training mode, the loss ``loss_fn(labels, logits)`` plus the
    model's regularization losses (as ``fit`` adds them); with ``optimizer`` (a Keras
    optimizer) its update applied."""
    import tensorflow as tf
    x = tf.constant(np.ascontiguousarray(np.transpose(x_nchw, (0, 2, 3, 1))))
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = loss_fn(labels, logits)
        for penalty in model.losses:
            loss = loss + tf.cast(penalty, loss.dtype)
    variables = model.trainable_weights
    grads = tape.gradient(loss, variables)
    if optimizer is not None:
        optimizer.apply_gradients(zip(grads, variables))
    return float(loss), logits.numpy(), {id(v): g.numpy() for v, g in zip(variables, grads)}


def batchnorm_in_inference(model):
    """Call every BatchNorm layer of ``model`` in inference mode, its gamma and beta still
    trained: in Keras, ``xception-finetune --freeze-bn`` (MXNet's ``use_global_stats``) is a
    BatchNorm called with ``training=False`` while its layer stays trainable."""
    for layer in _leaf_layers(model.layers):
        if type(layer).__name__ == "BatchNormalization":
            layer.call = functools.partial(_inference_call, layer.call)
    return model


def _inference_call(call, inputs, *args, **kwargs):
    kwargs["training"] = False
    return call(inputs, *args, **kwargs)


def _leaf_layers(layers):
    """Every layer, a nested model's layers in its place."""
    for layer in layers:
        if type(layer).__name__ in ("Functional", "Model", "Sequential"):
            yield from _leaf_layers(layer.layers)
        else:
            yield layer


def keras_layer_variables(model, canonical):
    """``[(keras layer name, canonical layer, role, variable, trainable)]`` of every weighted
    layer of ``model`` (a nested model's layers too); ``canonical``: Keras name -> the name
    table's layer name (the base's auto-named residual layers), others keep their names."""
    found = []
    for layer in _leaf_layers(model.layers):
        trainable = {id(v) for v in layer.trainable_weights}
        for v in layer.weights:
            found.append((layer.name, canonical.get(layer.name, layer.name),
                          keras_variable_role(v), v, id(v) in trainable))
    return found


def keras2_fused_layers(model, batch):
    """``{layer name: (momentum, n)}`` of the BatchNorm layers Keras 2 runs fused in
    ``model`` (``n``: values per channel in a batch of ``batch``), whose moving variance
    averages the Bessel-corrected batch variance (``training.keras2_statistics``)."""
    return {layer.name: (float(layer.momentum),
                         batch * int(np.prod(layer.input.shape[1:-1])))
            for layer in _leaf_layers(model.layers)
            if type(layer).__name__ == "BatchNormalization" and getattr(layer, "fused", False)
            and type(layer).__module__.startswith("tf_keras")}


def float64_twin(model):
    """The same Keras model and weights computing in float64: the reference against which
    each float32 evaluation's rounding is measured."""
    config = model.get_config()
    replace_policies(config, lambda name: "float64" if name == "float32" else None)
    twin = type(model).from_config(config)
    twin.set_weights([np.asarray(w, np.float64) for w in model.get_weights()])
    return twin
