"""``xception-parity --training``: run one training step on both sides and compare it
(``training_step`` holds the pieces and says what is compared; ``training_report`` judges
and prints)."""
import os

import mxnet as mx
import numpy as np
from mxnet import autograd

from xception_mx import keras_side
from xception_mx.checkpoint.reading import read_meta, read_params_file
from xception_mx.conversion.own_model.same_model import read_file_own_model
from xception_mx.errors import InputError, make_sure
from xception_mx.faults import alter_batchnorm
from xception_mx.model.training_only import set_training_layers
from xception_mx.model.own_model import branches, network_symbol
from xception_mx.serving.loading import symbol_block
from xception_mx.training.keras2_statistics import Keras2Variance, written_by_keras2
from xception_mx.images.sources import scan_image_folder
from xception_mx.training.frozen import freeze_batchnorm, frozen_layers, frozen_parameters
from xception_mx.training.recipe.losses import loss_block
from xception_mx.training.recipe.regularization import file_regularization
from xception_mx.training.train import build_network, trainable_params
from xception_mx.training.own_model_training import (base_called_in_inference,
                                                    build_own_model_network, is_binary_head,
                                                    set_base_inference, training_specs)

from .parity import build_inputs, resolve_input_size
from .training_compare import Comparison, Sides
from .training_recipe import compared_recipe, keras_loss
from .training_step import (batchnorm_in_inference, float64_twin, keras_rows,
                            keras_training_model)


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
        net.export_spec = None
        _as_saved(net, meta)
        canonical = keras_side.canonical_names(model)
        return model, net, canonical, lambda m: keras_side.xception_probe(m, training=True), \
            classes, []
    spec = meta.own_model_spec
    make_sure(not branches(spec), "%s: --training compares single-output classifiers", prefix)
    where = "--mxnet %s" % prefix
    last = [l for l in spec["head"] if l["class"] == "Dense"]
    make_sure(last, "%s: the head has no Dense layer; --training compares classifiers", prefix)
    classes = 2 if is_binary_head(spec) else last[-1]["units"]
    activity = (meta.regularizers or {}).get(last[-1]["name"], {}).get("activity_regularizer")
    make_sure(not activity or last[-1]["activation"] == "linear", "%s: the activity_regularizer "
              "of '%s' acts on its %s, after the logits --training compares; --training does "
              "not compare it", prefix, last[-1]["name"], last[-1]["activation"])
    train_spec = training_specs(spec, classes, where)[0]
    file_model = read_file_own_model(keras_path, spec, prefix)
    user, _ = keras_side.as_converted(keras_side.load_own_model(keras_path), size)
    model, replaced = keras_training_model(user, train_spec["head"][-1]["name"])
    net, _, net.export_spec, _ = build_own_model_network(spec, classes, size, [mx.cpu()],
                                                         prefix, epoch, frozen_bn=freeze_bn)
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


def run_training_parity(keras_path, prefix, images=(), labels_from=None, random_count=0,
                        seed=0, epoch=0, atol=1e-5, freeze_bn=False, optimizers=True):
    """``(records, details)`` of one training step on both sides (``StepRecord`` each) and
    (with ``optimizers``) of two steps of the recipe's optimizers; with ``freeze_bn``, the
    step of ``xception-finetune --freeze-bn``."""
    meta = read_meta(prefix)
    meta.require_keras_shaped(prefix, "--training")
    if not os.path.isfile(keras_path):
        raise InputError("%s: no such Keras model file" % keras_path)
    size = resolve_input_size(prefix, meta, None)
    loss, compared, line = compared_recipe(meta, "--mxnet %s" % prefix)
    model, net, canonical, probe_of, classes, replaced = _keras_model_and_net(
        keras_path, prefix, meta, size, epoch, freeze_bn)
    binary = loss.class_name == "BinaryCrossentropy"
    names, x, y = _labels(labels_from, images, random_count, seed, 2 if binary else classes,
                          size, meta.takes_raw_pixels, meta.channels)
    make_sure(len(x) >= 2, "--training needs a batch of at least 2 inputs (BatchNorm on batch "
              "statistics); give more images or --random N")
    twin = float64_twin(model)
    if freeze_bn:
        batchnorm_in_inference(model)
        batchnorm_in_inference(twin)
    pairs, probe = probe_of(model)
    regularization = file_regularization(net, meta, net.export_spec,
                                         "--mxnet %s" % prefix)
    sides = Sides(model, twin, net, canonical, keras_rows(meta.name_table),
                  keras_loss(loss, classes), loss_block(loss, classes), regularization)
    compare = Comparison(sides, pairs, probe, probe_of(twin)[1], x, y, atol,
                         lambda start, x: _mxnet_layer_outputs(net, start, pairs, x))
    records = compare.outputs() + compare.step() + [
        r for c in (compared if optimizers else ()) for r in compare.optimizer_steps(c)]
    details = {"keras": keras_path, "mxnet": prefix, "epoch": epoch, "inputs": names,
               "labels": [int(v) for v in y], "classes": classes, "recipe": line,
               "regularizers": regularization.describe() if regularization else "none",
               "identity_in_keras": replaced, "atol": atol, "freeze_bn": freeze_bn}
    return records, details
