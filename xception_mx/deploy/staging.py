"""What every deployment format holds: the checkpoint under one fixed name (``model``), at
the precision asked for (an int8 copy calibrated now), its labels and meta, and the service's
settings (``service.CONFIG_FILE``), gathered in a folder the format then packs."""
import json
import os
import shutil
import tempfile

from xception_mx.checkpoint.files import checkpoint_paths
from xception_mx.checkpoint.labels import labelled_names, labels_path
from xception_mx.checkpoint.reading import (check_params_header, load_symbol, read_meta,
                                            symbol_path)
from xception_mx.deploy.service import CONFIG_FILE
from xception_mx.errors import InputError, make_sure
from xception_mx.outputs import nearest_existing
from xception_mx.serving.plan import OWN_PRECISION
from xception_mx.images.decode import PIL_MODES
from xception_mx.serving.runtime import checkpoint_output_kind, is_binary

MODEL_NAME = "model"


def refuse_labels_of_several_outputs(prefix, meta, labels):
    make_sure(not (labels and meta.outputs), "--labels: %s has several outputs, whose classes "
              "the checkpoint names", prefix)


def check_source(prefix, epoch, precision, calibration, labels=None):
    """The checkpoint and what was asked of it, refused in one line before any work: no
    checkpoint or params file of that epoch; a network with no image input or no classes to
    answer with; int8 of an fp32 checkpoint without calibration images; another precision
    than a quantized copy's own; labels that do not fit."""
    symbol_path(prefix)
    params = checkpoint_paths(prefix, epoch)["params"]
    make_sure(os.path.isfile(params), "%s: no such file (expected the checkpoint's parameters "
              "of --epoch %d)", params, epoch)
    check_params_header(params)
    meta = read_meta(prefix)
    make_sure(meta.channels in PIL_MODES, "%s: the model takes %d input channels, which no "
              "image holds: a server of images cannot feed it", prefix, meta.channels)
    make_sure(meta.outputs or checkpoint_output_kind(meta) != "features", "%s: a feature "
              "extractor (no classifier): the service answers with classes", prefix)
    if meta.is_serving_copy:
        make_sure(precision in (OWN_PRECISION, meta.precision), "%s is an optimized %s copy: "
                  "export it as it is (--precision auto) or export %s", prefix, meta.precision,
                  meta.source_checkpoint("the checkpoint it was made from"))
        make_sure(not calibration, "--calib-images: %s is calibrated already", prefix)
    else:
        make_sure(precision != "int8" or calibration, "--precision int8 needs --calib-images "
                  "IMAGE... (a dozen representative images or folders to calibrate on), or "
                  "export a copy xception-quantize wrote")
    make_sure(precision == "int8" or not calibration, "--calib-images calibrates int8; "
              "--precision %s takes none", precision)
    refuse_labels_of_several_outputs(prefix, meta, labels)
    names = labels or (labels_path(prefix) if os.path.exists(labels_path(prefix)) else None)
    if names and not meta.outputs:           # a count that is not the model's: refused now
        labelled_names(prefix, output_classes(prefix, meta), names)
    return meta, names


def stage(prefix, folder, epoch=0, precision=OWN_PRECISION, calibration=None, top=5,
          transform="keras", batch_size=1, labels=None):
    """Write ``folder/model-symbol.json``, ``model-0000.params``, ``model-meta.json``,
    ``model-labels.txt`` (for a classifier with named classes) and the service's settings;
    return the service settings."""
    meta, names = check_source(prefix, epoch, precision, calibration, labels)
    target = os.path.join(folder, MODEL_NAME)
    if precision == "int8" and not meta.is_serving_copy:
        from xception_mx.images.decode import image_files
        from xception_mx.serving.fast import export_checkpoint
        from xception_mx.serving.loading import checkpoint_images
        files = image_files(calibration)
        export_checkpoint(prefix, target, "int8", checkpoint_images(files, meta, transform), epoch,
                          calibration_source=[str(f) for f in files])
    else:
        source, copied = checkpoint_paths(prefix, epoch), checkpoint_paths(target, 0)
        for key in ("symbol", "params", "meta"):
            if os.path.exists(source[key]):
                shutil.copyfile(source[key], copied[key])
    if names:
        shutil.copyfile(names, labels_path(target))
    config = {"prefix": MODEL_NAME, "precision": "auto" if precision == "int8" else precision,
              "top": top, "transform": transform, "batch_size": batch_size}
    with open(os.path.join(folder, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=1)
    return config


def output_classes(prefix, meta):
    """How many classes the checkpoint's one output ranks (2 for a binary head's one unit),
    from its symbol's shapes: what its labels must number."""
    if is_binary(meta):
        return 2
    shape = (1, meta.channels) + tuple(meta.input_size())
    _, outputs, _ = load_symbol(prefix).infer_shape(data=shape)
    return outputs[0][1]


def write_whole(out, build, what):
    """Write ``out`` whole or not at all: ``build(work)`` makes the file in a temporary folder
    on OUT's file system and returns ``(its path, result)``; OUT's folder is made only for
    the finished file, which is then moved to ``out``.  Returns the result; a write that
    fails is one line naming OUT and ``what`` it was to be."""
    folder = os.path.dirname(os.path.abspath(out))
    try:
        with work_folder(out) as work:
            path, result = build(work)
            os.makedirs(folder, exist_ok=True)
            shutil.move(path, out)
    except OSError as exc:
        raise InputError("%s: cannot write the %s (%s)" % (out, what, exc.strerror or exc))
    return result


def work_folder(out):
    """A temporary folder for OUT's pieces, on OUT's file system (its nearest existing
    folder), so that they are moved into place, not copied."""
    return tempfile.TemporaryDirectory(dir=nearest_existing(os.path.dirname(
        os.path.abspath(out))), prefix=".%s." % os.path.basename(out))
