"""The export of a fine-tuning run: its best epoch written as a checkpoint in the format
``keras2mxnet`` writes (``OUT/model-symbol.json``, ``-0000.params``, ``-meta.json``,
``-labels.txt``), the model with its own output."""
import mxnet as mx

from xception_mx.atomic import write_text
from xception_mx.checkpoint.files import write_checkpoint
from xception_mx.checkpoint.labels import labels_path
from xception_mx.checkpoint.meta import FINETUNE, build_meta
from xception_mx.images.convention import input_convention
from xception_mx.model.own_model import OwnModelNet, network_symbol
from xception_mx.model.xception import Xception, set_batchnorm

EXPORT_NAME = "model"


def model_input_shape(config):
    """``(H, W, C)`` of the run's plain Xception (C: the pretrained checkpoint's channels)."""
    return tuple(config["input_shape"]) + (config.get("channels", 3),)


def export_best(run_dir, epoch, num_classes, config, classes, history, own_model_spec=None,
                frozen=(), source=None, recipe=None, batchnorm=None, regularizers=None):
    """Export the best epoch (``epoch``: its number, from 1) as ``OUT/model-symbol.json`` +
    ``-0000.params`` + ``-meta.json`` + ``-labels.txt``, the format keras2mxnet writes: Xception
    with a softmax, or the own model with its own output; ``frozen``: the run's frozen
    layers, recorded so that a run from the export keeps them; ``source``: the Keras file the
    pretrained checkpoint came from (its version decides how a next run trains), ``recipe``:
    the recipe it was compiled with (a next run trains with it too); ``batchnorm``: the
    BatchNorm settings of the file (``model.xception.set_batchnorm``); ``regularizers``: its
    regularizers (kept for a next run and for mxnet2keras)."""
    size = tuple(config["input_shape"])
    if own_model_spec:
        net = OwnModelNet(own_model_spec, input_shape=size)
    else:
        net = Xception(classes=num_classes, classifier_activation="softmax",
                       input_shape=model_input_shape(config))
    set_batchnorm(net, batchnorm)
    params = net.collect_params()
    params.load(run_dir.epoch_file(epoch, "params"), ctx=mx.cpu())
    arg_params, aux_params = {}, {}
    symbol = network_symbol(net)
    aux_names = set(symbol.list_auxiliary_states())
    for name, param in params.items():
        (aux_params if name in aux_names else arg_params)[name] = param.data().asnumpy()
    prefix = run_dir.file(EXPORT_NAME)
    meta = build_meta(FINETUNE, model=net.config(), epoch=0, trained_epoch=epoch,
                      metrics=history[epoch - 1], classes=classes,
                      input=input_convention(size, own_model_spec, net.config()["channels"]),
                      training=config, frozen_layers=list(frozen), source=source or None,
                      batchnorm=batchnorm or None, regularizers=regularizers or None,
                      recipe=recipe or None)
    write_text(labels_path(prefix), "\n".join(classes) + "\n")
    write_checkpoint(prefix, symbol, arg_params, aux_params, meta, force=True)
    return prefix
