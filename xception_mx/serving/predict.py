"""What ``xception-predict`` prints: the top-k classes of image files with an MXNet checkpoint
alone (``commands.predict`` is the command)."""
import json
import os

from xception_mx.errors import InputError
from xception_mx.images.transforms import DEFAULT_TRANSFORM
from xception_mx.serving.runtime import Model, is_ranked

PROG = "xception-predict"


def predict_files(prefix, files, top=5, batch_size=8, labels=None, epoch=0, precision="auto",
                  calib_files=None, channel_padding="auto", onednn_isa="auto",
                  transform=DEFAULT_TRANSFORM):
    """``[(file, [(probability, class index, name)...])]`` for each image.

    ``precision``: ``auto`` (the checkpoint's own), ``fp32`` (oneDNN-fused), ``bf16`` or
    ``int8`` (calibrated on ``calib_files``, default the images themselves);
    ``channel_padding``: auto, on, off
    (see ``padding``); ``onednn_isa``: oneDNN's ISA cap for this process (see ``cpu``), which
    holds only if this is the process's first computation; the environment variable is
    given back afterwards; ``transform``: how the images are brought to the input size
    (``images.transforms.TRANSFORMS``).
    """
    for path in list(files) + list(calib_files or []):
        if not os.path.isfile(path):
            raise InputError("%s: no such image file" % path)
    model = Model(prefix, precision, epoch, batch_size, labels=labels,
                  channel_padding=channel_padding, onednn_isa=onednn_isa,
                  calibration=list(calib_files) if calib_files else None,
                  transform=transform)
    return list(zip(files, model.ranked(list(files), top, list(files), progress=True)))


def _ranked_lines(ranked, indent="  "):
    return ["%s%d. %.4f  %s" % (indent, rank, p, name)
            for rank, (p, _, name) in enumerate(ranked, 1)]


def format_predictions(results):
    """Per image its path, then its top classes; for a model with several outputs each
    output's name, then its top classes or its values."""
    lines = []
    for path, ranked in results:
        lines.append(path)
        if not isinstance(ranked, dict):
            lines += _ranked_lines(ranked)
            continue
        for output, entries in ranked.items():
            if is_ranked(entries):
                lines.append("  %s:" % output)
                lines += _ranked_lines(entries, "    ")
            else:
                lines.append("  %s: %s" % (output, " ".join("%.4f" % v for v in entries)))
    return "\n".join(lines)


def json_record(image, ranked):
    """One image's record of ``xception-predict --json``: ``{"image": image, "top": [[name,
    probability], ...]}`` best first; for a model with several outputs ``"outputs": {name:
    [[name, probability], ...] or [values]}`` instead of ``"top"``.  ``ranked``: a row of
    ``Model.ranked``."""
    def pairs(entries):
        return [[name, float(p)] for p, _, name in entries]

    if isinstance(ranked, dict):
        return {"image": image, "outputs": {
            output: pairs(entries) if is_ranked(entries) else [float(v) for v in entries]
            for output, entries in ranked.items()}}
    return {"image": image, "top": pairs(ranked)}


def json_lines(results):
    """``xception-predict --json``: one JSON object per image (``json_record``)."""
    return "\n".join(json.dumps(json_record(path, ranked)) for path, ranked in results)
