"""The library API: ``load``, ``convert`` and ``parity``, the Python forms of
``xception-predict``, ``keras2mxnet`` and ``xception-parity``.

    import xception_mx as xm
    xm.convert("model.h5", "out/xception")               # keras2mxnet model.h5 -o out/xception
    print(xm.parity("model.h5", "out/xception", ["photo.jpg"], random=4))  # xception-parity
    m = xm.load("out/xception")                           # xception-predict's fast path
    print(m.predict(["photo.jpg"], top=3))                # [[(name, probability), ...]]

Bad input raises ``xception_mx.InputError`` with the one-line message the commands print.
TensorFlow is imported by ``parity`` only (after MXNet, as it must be).
"""
from xception_mx.serving.runtime import Model


def load(prefix, precision="auto", epoch=0, batch_size=8, calibration=None,
         channel_padding="auto", onednn_isa="auto", labels=None, transform="keras"):
    """An MXNet Xception checkpoint ready to run on the fast path, as ``xception-predict``
    runs it: a ``Model`` whose ``predict(images, top=5)`` gives per image the top classes as
    ``(name, probability)`` pairs and whose ``logits(x)`` gives the raw output.

    ``precision``: ``"auto"`` (the checkpoint's own: fp32, or what ``xception-quantize``
    wrote), ``"fp32"``, ``"bf16"`` or ``"int8"`` (calibrated on ``calibration`` images, or
    on the first call's); ``channel_padding`` (``auto``/``on``/``off``) and ``onednn_isa``
    (``auto``/``all``/``amx``/``avx512_mic``/``avx2``) as the command's options: ``auto``
    picks what is fastest on this CPU, measured at the first call (cached per machine and
    checkpoint shape: ``serving.tuning``).  ``labels``: a class-names file (default:
    ``PREFIX-labels.txt``, or ImageNet's names for 1000 classes).  ``transform``: how images
    are brought to the input size, ``"keras"`` (Keras' ``image_dataset_from_directory``),
    ``"load_img"`` (``keras.utils.load_img``'s Pillow resize) or ``"crop"`` (the centre crop
    of fine-tuning's validation).
    """
    return Model(prefix, precision, epoch, batch_size, calibration, channel_padding,
                 onednn_isa, labels, transform)


def convert(keras_file, prefix, input_shape=None, classifier_activation="softmax",
            pooling=None, epoch=0, force=False, strict=False, labels=None):
    """Convert a Keras Xception file (any format ``keras2mxnet`` reads: weights or whole
    models, plain Xception or your base + head model) and write ``PREFIX-symbol.json``,
    ``PREFIX-%04d.params`` and ``PREFIX-meta.json``; return ``{"symbol", "params", "meta"}``
    paths.  ``input_shape=(H, W)``: another input size than the file's (or 299x299);
    ``classifier_activation`` (``"softmax"`` or ``None`` for logits) and ``pooling``
    (``None``, ``"avg"``, ``"max"``) apply to plain Xception files with and without top.
    NaN/Inf weights warn (``RuntimeWarning``), or raise with ``strict``.  ``labels``: a file
    of the model's class names, one per line in output order, written as
    ``PREFIX-labels.txt`` (``paths["labels"]``)."""
    import warnings
    from xception_mx.conversion.converter import convert_file, head_options
    asked = None if classifier_activation == "softmax" else "none"   # softmax: the default
    options = dict(head_options(asked, pooling), strict=strict,
                   input_shape=input_shape and tuple(input_shape))
    conversion, paths = convert_file(keras_file, prefix, epoch=epoch, force=force,
                                     labels=labels, **options)
    for warning in conversion.warnings:
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    return {key: paths[key] for key in ("symbol", "params", "meta", "labels") if key in paths}


def parity(keras_file, prefix, images=(), random=0, seed=0, input_shape=None, epoch=0,
           batch_size=8, per_layer=False, atol=1e-4):
    """Run the Keras model (loaded by Keras itself, ``safe_mode``) and the MXNet checkpoint
    on the same images and/or ``random`` seeded inputs and compare their outputs, as
    ``xception-parity`` does.  Returns a ``ParityResult``: true when ``passed``; ``str()``
    is the command's table; ``records``, ``layers`` (with ``per_layer``),
    ``first_divergent_layer``, ``max_abs`` and ``report()``."""
    from xception_mx.validation.verdict import check_parity
    if isinstance(images, str):
        images = [images]
    return check_parity(keras_file, prefix, images, random, seed, input_shape, epoch,
                        batch_size, per_layer, atol)
