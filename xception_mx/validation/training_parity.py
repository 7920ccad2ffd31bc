"""``xception-parity --training``: run one training step on both sides and compare it
(``training_step`` holds the pieces and says what is compared; ``training_report`` judges
and prints)."""
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from xception_mx import keras_side
from xception_mx.checkpoint.reading import read_meta, read_params_file
from xception_mx.conversion import layouts
from xception_mx.conversion.own_model.same_model import read_file_own_model
from xception_mx.errors import InputError, make_sure
from xception_mx.faults import alter_batchnorm
from xception_mx.model.training_only import set_training_layers
from xception_mx.model.own_model import branches, network_symbol
from xception_mx.serving.loading import symbol_block
from xception_mx.training.keras2_statistics import (Keras2Variance, bessel_corrected,
                                                    written_by_keras2)
from xception_mx.images.sources import scan_image_folder
from xception_mx.training.recipe.optimizers import SETTING_OF_KERAS, resolve_optimizer
from xception_mx.training.frozen import freeze_batchnorm, frozen_layers, frozen_parameters
from xception_mx.training.train import (build_network, forward_backward, make_trainer,
                                        trainable_params)
from xception_mx.training.own_model_training import (base_called_in_inference,
                                                    build_own_model_network, set_base_inference,
                                                    training_specs)

from .parity import build_inputs, resolve_input_size
from .training_step import (FLOOR_SHARE, GRADIENT_ATOL, ROUNDING_FACTOR, StepRecord,
                            batchnorm_in_inference, float64_twin, keras2_fused_layers,
                            keras_layer_variables, keras_rows, keras_step, keras_training_model,
                            mxnet_values, relative, set_mxnet_values, to_keras_layout)

# ours -> (Keras class, arguments; the learning rates of Keras' examples)
COMPARED_OPTIMIZERS = {
    "keras-sgd": ("SGD", {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True}),
    "keras-adam": ("Adam", {"learning_rate": 0.001}),
    "keras-adamw": ("AdamW", {"learning_rate": 0.001, "weight_decay": 0.004}),
}


def _keras_model_and_net(keras_path, prefix, meta, size, epoch, freeze_bn=False):
    """``(keras training model, MXNet training net, canonical names, probe (a model ->
    ``(pairs, run)`` of its layers in training mode), classes, replaced layers)``; with
    ``freeze_bn`` as ``xception-finetune --freeze-bn`` trains (``batchnorm_in_inference``)."""
    channels = meta.channels
    if not meta.is_own_model:
        head = {k.split(":", 1)[-1]: v for k, v in read_params_file(prefix, epoch).items()}
        make_sure("predictions_weight" in head, "%s: a feature extractor (no 'predictions'); "
                  "--training compares classifiers", prefix)
        classes = int(head["predictions_weight"].shape[0])
        model = keras_side.load_keras_reference(keras_path, prefix, True, classes, None, size,
                                                channels, _keras_that_wrote(keras_path),
                                                meta.batchnorm)
        net = build_network(classes, tuple(size) + (channels,), [mx.cpu()], prefix, epoch,
                            frozen_bn=freeze_bn)[0]
        _as_saved(net, meta)
        canonical = keras_side.canonical_names(model)
        return model, net, canonical, lambda m: keras_side.xception_probe(m, training=True), \
            classes, []
    spec = meta.own_model_spec
    make_sure(not branches(spec), "%s: --training compares single-output classifiers", prefix)
    where = "--mxnet %s" % prefix
    last = [l for l in spec["head"] if l["class"] == "Dense"]
    make_sure(last, "%s: the head has no Dense layer; --training compares classifiers", prefix)
    classes = last[-1]["units"]
    train_spec = training_specs(spec, classes, where)[0]
    file_model = read_file_own_model(keras_path, spec, prefix)
    user, _ = keras_side.as_converted(keras_side.load_own_model(keras_path), size)
    model, replaced = keras_training_model(user, train_spec["head"][-1]["name"])
    net = build_own_model_network(spec, classes, size, [mx.cpu()], prefix, epoch,
                                 frozen_bn=freeze_bn)[0]
    set_base_inference(net, freeze_bn or base_called_in_inference(spec, meta.source))
    _as_saved(net, meta)
    base = model.get_layer(file_model.base_name) if file_model.base_name else model
    only = None if file_model.base_name else set(file_model.base_layers)
    canonical = keras_side.canonical_names(base, only=only)
    base_training = not base_called_in_inference(spec, meta.source)

    def probe(m):
        return keras_side.own_model_probe(m, file_model, training=True,
                                       layers=train_spec["head"], base_training=base_training)
    return model, net, canonical, probe, classes, replaced


def _keras_that_wrote(keras_path):
    """tf-keras for a file Keras 2 wrote (whose training differs: its fused BatchNorm), else
    Keras 3."""
    if not keras_side.written_by_keras2(keras_path):
        return None
    keras_side.import_keras()                      # MXNet first, TensorFlow quiet
    import tf_keras
    return tf_keras


def _as_saved(net, meta):
    """The training network as xception-finetune trains it: the layers the file saved
    non-trainable frozen (no gradient, BatchNorm in inference mode); its Dropout and
    augmentation switched off, as in the Keras model compared; Keras 2's moving variance for
    a file Keras 2 wrote (``net.keras2_variance``, applied after the backward pass); and the
    test hook."""
    set_training_layers(net, False)
    net.keras2_variance = Keras2Variance(net) if written_by_keras2(meta) else None
    frozen = frozen_layers(meta)
    trainable_params(net, False, frozen_parameters(net, frozen))
    freeze_batchnorm(net, frozen)
    alter_batchnorm(net)


def _labels(labels_from, images, random_count, seed, classes, size, raw, channels):
    """``(names, x, labels)``: images (a class folder's, with its labels) and random inputs
    with seeded random labels."""
    labels = []
    if labels_from:
        names_, samples = scan_image_folder(labels_from)
        make_sure(len(names_) == classes, "--labels-from %s: %d classes, the model has %d",
                  labels_from, len(names_), classes)
        images = [path for path, _ in samples]
        labels = [label for _, label in samples]
    names, x = build_inputs(images, random_count, seed, size, raw, channels)
    rng = np.random.RandomState(seed + 1)
    labels = np.array(labels + list(rng.randint(0, classes, len(x) - len(labels))), np.float32)
    return names, x, labels


def _mxnet_layer_outputs(net, start, pairs, x):
    """Every paired MXNet internal output of the training network in training mode."""
    internals = network_symbol(net).get_internals()
    outputs = [name for _, _, name in pairs]
    group = mx.sym.Group([internals[name] for name in outputs])
    aux_names = set(group.list_auxiliary_states())
    block = symbol_block(group, {k: mx.nd.array(v) for k, v in start.items() if k not in aux_names},
                         {k: mx.nd.array(v) for k, v in start.items() if k in aux_names})
    with autograd.record(train_mode=True):
        values = block(mx.nd.array(x))
    return {name: v.asnumpy() for name, v in zip(outputs, values)}


def _mxnet_step(net, start, x, y, optimizer=None, gradients=None):
    """Loss, logits, gradients (of the mean loss) and parameters after the step; with
    ``gradients`` (``{parameter: gradient of the mean loss}``) the optimizer steps on those
    instead of its own."""
    set_mxnet_values(net, start)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = None
    if optimizer:                    # as xception-finetune makes it
        arguments = dict(COMPARED_OPTIMIZERS[optimizer][1])
        lr = arguments.pop("learning_rate")
        trainable = {n: p for n, p in net.collect_params().items() if p.grad_req != "null"}
        trainer = make_trainer(trainable, resolve_optimizer(optimizer, lr, {
            SETTING_OF_KERAS[k]: v for k, v in arguments.items()}), "device")
    losses, outputs = forward_backward(net, loss_fn, mx.nd.array(x), mx.nd.array(y),
                                       [mx.cpu()])
    if net.keras2_variance:
        net.keras2_variance.apply()
    grads = {k: v / len(x) for k, v in mxnet_values(net, "grad").items()}
    if trainer is not None:
        for name, param in net.collect_params().items():
            if gradients and name in gradients and param.grad_req != "null":
                param.grad()[:] = mx.nd.array(gradients[name] * len(x))
        trainer.step(len(x))
    return (float(losses[0].mean().asscalar()), outputs[0].asnumpy(), grads,
            mxnet_values(net))


def run_training_parity(keras_path, prefix, images=(), labels_from=None, random_count=0,
                        seed=0, epoch=0, atol=1e-5, optimizers=tuple(COMPARED_OPTIMIZERS),
                        freeze_bn=False):
    """``(records, details)`` of one training step on both sides (``StepRecord`` each); with
    ``freeze_bn``, the step of ``xception-finetune --freeze-bn``."""
    meta = read_meta(prefix)
    meta.require_keras_shaped(prefix, "--training")
    if not os.path.isfile(keras_path):
        raise InputError("%s: no such Keras model file" % keras_path)
    size = resolve_input_size(prefix, meta, None)
    model, net, canonical, probe_of, classes, replaced = _keras_model_and_net(
        keras_path, prefix, meta, size, epoch, freeze_bn)
    names, x, y = _labels(labels_from, images, random_count, seed, classes, size,
                          meta.takes_raw_pixels, meta.channels)
    make_sure(len(x) >= 2, "--training needs a batch of at least 2 inputs (BatchNorm on batch "
              "statistics); give more images or --random N")
    rows = keras_rows(meta.name_table)
    twin = float64_twin(model)
    if freeze_bn:
        batchnorm_in_inference(model)
        batchnorm_in_inference(twin)
    pairs, probe = probe_of(model)
    probe64 = probe_of(twin)[1]
    compare = Comparison(model, net, canonical, rows, pairs, probe, probe64, twin, x, y, atol)
    records = compare.outputs() + compare.step() + [
        r for name in optimizers for r in compare.optimizer_step(name)]
    details = {"keras": keras_path, "mxnet": prefix, "epoch": epoch, "inputs": names,
               "labels": [int(v) for v in y], "classes": classes,
               "identity_in_keras": replaced, "atol": atol, "freeze_bn": freeze_bn}
    return records, details


class Comparison:
    """The quantities of one training step, Keras against MXNet, each with the rounding of
    Keras' own float32 evaluation (against its float64 twin, ``training_step.float64_twin``)."""

    def __init__(self, model, net, canonical, rows, pairs, probe, probe64, twin, x, y, atol):
        self.model, self.net, self.rows, self.pairs = model, net, rows, pairs
        self.probe, self.probe64, self.twin = probe, probe64, twin
        self.x, self.y, self.atol = x, y, atol
        self.variables = keras_layer_variables(model, canonical)
        self.twin_variables = keras_layer_variables(twin, canonical)
        self.keras_start = model.get_weights()
        self.twin_start = twin.get_weights()
        self.twin_values = [v.numpy() for _, _, _, v, _ in self.twin_variables]
        self.fused = keras2_fused_layers(model, len(x))
        self.mx_start = mxnet_values(net)

    def _keras_restart(self):
        self.model.set_weights(self.keras_start)
        self.twin.set_weights(self.twin_start)

    def _record(self, what, layer, deviation, rounding, floor_rounding=0.0):
        atol = GRADIENT_ATOL if what == "gradient" else self.atol
        tolerance = max(atol, ROUNDING_FACTOR * max(rounding, floor_rounding))
        return StepRecord(what, layer, deviation, rounding, tolerance)

    def outputs(self):
        """Every layer's output in training mode (forward order)."""
        nhwc = np.ascontiguousarray(np.transpose(self.x, (0, 2, 3, 1)))
        self._keras_restart()
        theirs, exact = self.probe(nhwc), self.probe64(nhwc.astype(np.float64))
        self._keras_restart()
        ours = _mxnet_layer_outputs(self.net, self.mx_start, self.pairs, self.x)
        records = []
        for (_, name, mx_name), k, k64 in zip(self.pairs, theirs, exact):
            m = ours[mx_name]
            m = (np.transpose(m, (0, 2, 3, 1)) if m.ndim == 4 else m).reshape(k.shape)
            scale = max(1.0, float(np.abs(k).max()))
            records.append(self._record("output", name, float(np.abs(m - k).max()) / scale,
                                        float(np.abs(k - k64).max()) / scale))
        return records

    def _keras_run(self, optimizer=None, optimizer64=None):
        """Keras' step in float32 and in float64: ``((loss, logits, grads, after), ...)``,
        variables keyed by their place in ``self.variables``."""
        self._keras_restart()
        results = []
        for model, variables, x, opt in ((self.model, self.variables, self.x, optimizer),
                                         (self.twin, self.twin_variables,
                                          self.x.astype(np.float64), optimizer64)):
            loss, logits, grads = keras_step(model, x, self.y, opt)
            by_place = {i: grads.get(id(v)) for i, (_, _, _, v, _) in enumerate(variables)}
            after = {i: v.numpy() for i, (_, _, _, v, _) in enumerate(variables)}
            results.append((loss, logits, by_place, after))
        self._keras_restart()
        return results

    def step(self):
        """Loss, logits, gradients and BatchNorm moving statistics."""
        (loss, logits, grads, after), (loss64, logits64, grads64, after64) = self._keras_run()
        m_loss, m_logits, m_grads, m_after = _mxnet_step(self.net, self.mx_start, self.x, self.y)
        records = [self._record("loss", None, abs(m_loss - loss) / abs(loss),
                                abs(loss - loss64) / abs(loss64)),
                   self._record("logits", None, relative(m_logits, logits),
                                relative(logits, logits64))]
        gradients, statistics = [], []
        for i, (layer, canonical, role, _, trainable) in enumerate(self.variables):
            param, transform = self.rows[(canonical, role)]
            if role in ("moving_mean", "moving_variance"):
                ours = to_keras_layout(m_after[param], transform)
                exact = after64[i]
                if role == "moving_variance" and layer in self.fused:   # float64 is unfused
                    exact = bessel_corrected(exact, self.twin_values[i], *self.fused[layer])
                statistics.append((role, layer, relative(ours, after[i]),
                                   relative(after[i], exact)))
            elif trainable:
                ours = to_keras_layout(m_grads[param], transform)
                gradients.append(("gradient", layer, relative(ours, grads[i]),
                                  relative(grads[i], grads64[i])))
        for group in (statistics, gradients):
            floor = FLOOR_SHARE * float(np.median([r[3] for r in group])) if group else 0.0
            records += [self._record(*r, floor_rounding=floor) for r in group]
        return records

    def optimizer_step(self, name):
        """The weights after one step of optimizer ``name`` on both sides, from the same
        gradients (Keras' float32 ones, fed to MXNet's optimizer in its layout): the update
        alone is compared, and its rounding is Keras' own update of those gradients in
        float64."""
        import tensorflow as tf
        library = __import__(type(self.model).__module__.split(".")[0])
        cls, arguments = COMPARED_OPTIMIZERS[name]
        self._keras_restart()
        _, _, grads = keras_step(self.model, self.x, self.y,
                                 getattr(library.optimizers, cls)(**arguments))
        after = [v.numpy() for _, _, _, v, _ in self.variables]
        fed, exact = {}, []
        for (_, canonical, role, v, trainable), (_, _, _, v64, _) in zip(self.variables,
                                                                        self.twin_variables):
            if trainable and grads.get(id(v)) is not None:
                param, transform = self.rows[(canonical, role)]
                fed[param] = layouts.FORWARD[transform](grads[id(v)])
                exact.append((tf.constant(grads[id(v)].astype(np.float64)), v64))
        getattr(library.optimizers, cls)(**arguments).apply_gradients(exact)
        after64 = [v.numpy() for _, _, _, v, _ in self.twin_variables]
        start = self.keras_start_by_place()
        ours = _mxnet_step(self.net, self.mx_start, self.x, self.y, name, fed)[3]
        found = []
        for i, (layer, canonical, role, _, trainable) in enumerate(self.variables):
            if not trainable:
                continue
            param, transform = self.rows[(canonical, role)]
            moved = after64[i] - start[i]
            found.append((name, layer, relative(to_keras_layout(ours[param], transform),
                                                after[i], moved),
                          relative(after[i], after64[i], moved)))
        set_mxnet_values(self.net, self.mx_start)
        return [self._record(*r) for r in found]

    def keras_start_by_place(self):
        self._keras_restart()
        return [v.numpy() for _, _, _, v, _ in self.variables]
