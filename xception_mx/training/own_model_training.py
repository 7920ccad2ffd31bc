"""Fine-tuning a user's own model (a checkpoint ``keras2mxnet`` wrote from
a base + head Keras model).

- The head is kept whole when its last ``Dense`` has as many units as the
  data has classes; otherwise only that ``Dense`` is replaced (same name,
  Xavier-initialised, seeded).  Everything else starts from the checkpoint.
- A head ending in one unit (``Dense(1)`` logits or ``Dense(1, "sigmoid")``) is a binary
  classifier: kept, trained on two classes with binary cross-entropy on its logit (class 1:
  the second folder in sorted order, as ``image_dataset_from_directory`` numbers them).
- A head ending in ``Dense(k, "sigmoid")`` is a multi-label classifier: trained with binary
  cross-entropy on its k logits and multi-hot labels (``--labels-csv``).
- Training runs on logits: the last ``Dense`` without its softmax (and
  without a ``Softmax``/``Activation('softmax')`` layer after it); the export
  puts the model's own output back, so it computes what the Keras model would.
  A head that ends otherwise (another activation, BatchNorm after the last ``Dense``)
  is refused.
- While only the head trains (``--freeze-base-epochs``), and throughout when
  the model calls its base as ``base(x, training=False)`` (the keras.io
  guide, recorded in the file), the base runs in inference mode as in Keras:
  its BatchNorm layers use their running statistics (``use_global_stats``,
  which keeps the gradients right); the head's BatchNorm layers train as in
  Keras.
- Layers that act only in training (Dropout and its kin, the augmentation layers) act at
  the file's rates and parameters, seeded per step so that a resumed run is the same run
  (``model/training_only.py``); the exported symbol leaves them out, as Keras' inference does.
"""
from xception_mx.checkpoint.reading import read_meta, read_params_file
from xception_mx.errors import InputError, make_sure
from xception_mx.model.training_only import inference_layers
from xception_mx.model.own_model import OwnModelNet, is_binary_head, is_multilabel_head  # noqa
from xception_mx.model.xception import batchnorm_blocks, set_batchnorm
from xception_mx.training.padded_training import padded_network
from xception_mx.training.train import initialize


def pretrained_own_model_spec(prefix):
    """The own model's spec of checkpoint ``prefix``, or ``None`` for plain Xception."""
    meta = read_meta(prefix) if prefix else None
    return meta.own_model_spec if meta is not None and meta.is_own_model else None


def training_specs(spec, num_classes, where):
    """``(train_spec, export_spec, head_kept)`` for ``num_classes`` classes (a binary head:
    two, trained on its one logit)."""
    head = spec["head"]
    dense = [i for i, layer in enumerate(head) if layer["class"] == "Dense"]
    make_sure(dense, "%s: the model's head has no Dense layer (a feature extractor); "
              "xception-finetune trains classifiers", where)
    last_at = dense[-1]
    last, after = head[last_at], inference_layers(head[last_at + 1:])
    if is_binary_head(spec):
        make_sure(num_classes == 2, "%s: the head ends in one unit ('%s', %s): a binary "
                  "classifier, trained on two classes; the data has %d", where, last["name"],
                  last["activation"], num_classes)
        train = dict(spec, head=head[:last_at] + [dict(last, activation="linear")])
        return train, spec, True
    if is_multilabel_head(spec):               # a sigmoid per class, trained on its logits
        replaced = dict(last, units=num_classes)
        train = dict(spec, head=head[:last_at] + [dict(replaced, activation="linear")])
        return train, dict(spec, head=head[:last_at] + [replaced] + head[last_at + 1:]), \
            last["units"] == num_classes
    softmax_after = all(layer["class"] == "Softmax" or (layer["class"] == "Activation" and
                                                         layer["activation"] == "softmax")
                        for layer in after)
    make_sure(last["activation"] in ("softmax", "linear") and softmax_after and
              len(after) <= (last["activation"] == "linear"),
              "%s: the head ends in %s after its last Dense '%s'; xception-finetune trains "
              "single-label classifiers (the last Dense linear or softmax, at most a softmax "
              "after it)", where, ", ".join(
                  [last["activation"]] + ["%s %s" % (l["class"], l["name"]) for l in after]),
              last["name"])
    replaced = dict(last, units=num_classes)
    train = dict(spec, head=head[:last_at] + [dict(replaced, activation="linear")])
    export = dict(spec, head=head[:last_at] + [replaced] + after)
    return train, export, last["units"] == num_classes


def build_own_model_network(spec, num_classes, input_size, contexts, prefix, epoch=0, seed=0,
                           frozen_bn=False, channel_block=None):
    """``(net, head_kept, export_spec, shapes)``: the training network (logits) on
    ``contexts``, its base's channels padded to ``channel_block`` (``shapes``: its
    ShapeMap, see padded_training), filled from checkpoint ``prefix``."""
    where = "--pretrained %s" % prefix
    train_spec, export_spec, kept = training_specs(spec, num_classes, where)
    try:
        net, shapes = padded_network(lambda block: OwnModelNet(
            train_spec, input_shape=input_size, frozen_bn=frozen_bn, channel_block=block),
            channel_block)
    except ValueError as exc:
        raise InputError("--input-shape %d %d: %s" % (tuple(input_size) + (exc,)))
    initialize(net, contexts, seed)
    set_batchnorm(net, read_meta(prefix).batchnorm)
    saved = {k.split(":", 1)[-1]: v for k, v in read_params_file(prefix, epoch).items()}
    last = train_spec["head"][-1]["name"]
    fresh = set() if kept else {last + "_weight", last + "_bias"}
    shapes.set_values(net, saved, where, [n for n in net.collect_params() if n not in fresh])
    return net, kept, dict(export_spec, input_shape=list(net.input_size)), shapes


def base_called_in_inference(spec, source):
    """Whether Keras keeps a base the model calls as ``base(x, training=False)`` in inference
    mode while the model trains: Keras 2 does; Keras 3 does not (measured with 3.15: the
    model's own ``training=True``, which ``fit`` passes, overrides the call's ``False`` and
    the base's BatchNorm layers train on batch statistics).  ``source``: the checkpoint meta's
    ``source`` (the Keras version that wrote the file; unknown: the call's intent)."""
    version = str((source or {}).get("keras_version") or "")
    return bool(spec["base"].get("inference_mode")) and not version.startswith("3")


def set_base_inference(net, inference):
    """Run the base's BatchNorm layers on their running statistics (or not).
    Takes effect at the next forward pass of a network that is not
    hybridized (the training network is not)."""
    for block in batchnorm_blocks(net.base):
        block._kwargs["use_global_stats"] = inference
