"""A checkpoint ready to run: what ``xception_mx.load`` returns and ``xception-predict`` runs.

``Model`` makes the CPU choices ``xception-predict`` makes (channel padding per precision and
CPU, oneDNN's ISA cap, AMX): the network is built at the first call, inside the cap, which
holds only where that is the process's first computation (see ``cpu.isa_capped``).  int8 from
an fp32 checkpoint is calibrated on ``calibration`` images when given, otherwise on the first
call's own images, as ``xception-predict`` does.
"""
import os

import numpy as np

from xception_mx.checkpoint.labels import class_names
from xception_mx.checkpoint.reading import read_meta, symbol_path
from xception_mx.cpu import PROCESS, UNREAD, isa_capped
from xception_mx.errors import InputError, make_sure
from xception_mx.images.decode import image_files
from xception_mx.images.transforms import DEFAULT_TRANSFORM, TRANSFORMS
from xception_mx.model.own_model import is_binary_head, output_kind
from xception_mx.serving.fast import load_fast_network
from xception_mx.serving.loading import checkpoint_images, run_batches
from xception_mx.serving.plan import checked_precision, plan_inference
from xception_mx.serving.tuning import tuned_choice


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def class_probabilities(outputs, kind):
    """A classifier's outputs as class probabilities: logits through softmax; a model's own
    probabilities (or scores: a sigmoid multi-label head, say) as the model gives them; a
    binary classifier's one logit or sigmoid score ``p`` as two classes, ``[1 - p, p]``."""
    if outputs.ndim == 2 and outputs.shape[1] == 1 and kind in BINARY_KINDS:
        p = 1.0 / (1.0 + np.exp(-outputs[:, 0])) if kind == "logits" else outputs[:, 0]
        return np.stack([1.0 - p, p], axis=1)
    return softmax(outputs) if kind == "logits" else outputs


BINARY_KINDS = ("logits", "scores")


def is_binary(meta):
    """Whether the checkpoint is a binary classifier, as xception-finetune trains one: one
    output, one unit, a logit or a sigmoid score (of class 1, the second of its two classes;
    ``model.own_model.is_binary_head``)."""
    return not meta.outputs and meta.is_own_model and is_binary_head(meta.own_model_spec)


def checkpoint_output_kind(meta):
    """``output_kind`` of an own model; for plain Xception ``"logits"``,
    or ``"features"`` when it has no top (pooled or not)."""
    if meta.is_own_model:
        return output_kind(meta.own_model_spec)
    return "logits" if meta.include_top else "features"


def rank_classes(outputs, kind, names, top):
    """Per row of ``outputs``, ``[(probability, class index, name)...]``, best first: logits
    go through softmax; a model's own probabilities or scores (a sigmoid multi-label head,
    say) are ranked as the model gives them."""
    probabilities = class_probabilities(outputs, kind)
    ranked = []
    for p in probabilities:
        order = np.argsort(-p)[:top]
        ranked.append([(float(p[i]), int(i), names[i]) for i in order])
    return ranked


def output_values(outputs, specs, top):
    """Per image, ``{output name: entries}`` of a model with several outputs: for an output
    of class scores (softmax, or sigmoid over several units) ``[(probability, class index,
    "class i")...]``, the ``top`` best first; for the others (a linear regression, one
    sigmoid unit) its values, as a list."""
    rows = []
    for i in range(len(outputs[0])):
        row = {}
        for spec, values in zip(specs, outputs):
            scores = spec["kind"] in ("probabilities", "scores") and values.shape[1] > 1
            row[spec["name"]] = (rank_classes(values[i:i + 1], spec["kind"], [
                "class %d" % c for c in range(values.shape[1])], top)[0]
                if scores else [float(v) for v in values[i].ravel()])
        rows.append(row)
    return rows


def is_ranked(entries):
    """Whether an output's entries in ``output_values`` are ranked classes, not values."""
    return bool(entries) and isinstance(entries[0], tuple)


def image_list(images):
    """One image or a sequence of them as a list, each folder replaced by its images."""
    if isinstance(images, (str, os.PathLike)) or not isinstance(images, (list, tuple)):
        images = [images]
    found = []
    for image in images:
        is_folder = isinstance(image, (str, os.PathLike)) and os.path.isdir(image)
        found.extend(image_files(image) if is_folder else [image])
    make_sure(len(found) > 0, "no images given")
    return found


class Model:
    """An MXNet Xception checkpoint on the fast path at one precision.

    ``precision``: ``auto`` (the checkpoint's own: fp32, or what ``xception-quantize``
    wrote), ``fp32`` (oneDNN-fused), ``bf16`` or ``int8``; ``channel_padding`` and
    ``onednn_isa`` as ``xception-predict``'s options (``auto``: this CPU's fastest);
    ``transform``: how images are brought to the input size (``images.transforms``; default
    Keras' ``image_dataset_from_directory`` resize).
    """

    def __init__(self, prefix, precision="auto", epoch=0, batch_size=8, calibration=None,
                 channel_padding="auto", onednn_isa="auto", labels=None,
                 transform=DEFAULT_TRANSFORM):
        checked_precision(precision)
        make_sure(batch_size >= 1, "batch_size must be >= 1, got %r", batch_size)
        make_sure(transform in TRANSFORMS, "transform must be one of %s, got %r",
                  ", ".join(TRANSFORMS), transform)
        self.prefix, self.epoch, self.batch_size, self.labels = prefix, epoch, batch_size, labels
        self.transform = transform
        symbol_path(prefix)           # no checkpoint there: said now, not at the first call
        self.meta = read_meta(prefix)     # empty for a checkpoint written without one
        self.plan = plan_inference(self.meta, precision, channel_padding, onednn_isa)
        self.precision, self.padded, self.onednn_isa = self.plan
        self.asked = (channel_padding, onednn_isa)   # auto's part, measured at first use
        self.tuned = None                 # what auto measured fastest (serving.tuning)
        self.kind = checkpoint_output_kind(self.meta)
        self.binary = is_binary(self.meta)
        self.outputs = self.meta.outputs    # several: their specs
        self.input_size = tuple(self.meta.input_size())
        self.channels = self.meta.channels
        self.network = None           # the fast network (a Gluon SymbolBlock), at first use
        self._calibration = None if calibration is None else self._as_input(calibration)

    def __repr__(self):
        return "<xception_mx.Model %s %s, input %dx%dx%d, %s%s>" % (
            self.prefix, self.precision, self.channels, self.input_size[0], self.input_size[1],
            self.kind,
            ", channels padded" if self.padded else "")

    def inputs(self, images):
        """Images (file paths, folders of them, encoded bytes, PIL images or ``(H, W, 3)``
        0..255 arrays) as this checkpoint's ``data``: NCHW float32 at its size (by
        ``self.transform``) and channels (grayscale for a 1-channel model), raw pixels or
        ``x / 127.5 - 1`` as its meta says."""
        return checkpoint_images(image_list(images), self.meta, self.transform)

    def _as_input(self, x):
        """``x`` as a float32 NCHW batch the network takes: an array as it is, else images."""
        if isinstance(x, np.ndarray) and x.ndim == 4:
            expected = (self.channels,) + self.input_size
            make_sure(x.shape[1:] == expected, "%s takes NCHW input of shape (N, %s), got %s",
                      self.prefix, ", ".join(map(str, expected)), x.shape)
            return np.ascontiguousarray(x, dtype=np.float32)
        return self.inputs(x)

    def logits(self, x, progress=False):
        """The network's output for an NCHW float32 batch in the checkpoint's convention (or
        images, decoded by ``inputs``): logits for a classifier, as a numpy array; for a model
        with several outputs, a list of arrays in its outputs' order (``self.outputs``)."""
        x = self._as_input(x)
        if self.network is not None:
            return run_batches(self.network, x, self.batch_size, progress=progress)
        self._tune()
        with isa_capped(self.onednn_isa, self.precision, self.padded, tuned=self.tuned):
            calibration = self._calibration if self._calibration is not None else x
            self.network, _ = load_fast_network(self.prefix, self.epoch,
                                                batch_size=self.batch_size,
                                                calibration=calibration, plan=self.plan)
            return run_batches(self.network, x, self.batch_size, progress=progress)

    def _tune(self):
        """``auto`` by measurement (``serving.tuning``), before the process's first network
        (later, oneDNN's cap is taken and the rules stand)."""
        if PROCESS["cap"] != UNREAD or (self.meta.is_serving_copy and
                                        self.precision != self.meta.precision):
            return                    # (a copy at another precision is refused next)
        choice = tuned_choice(self.prefix, self.epoch, self.meta, self.precision,
                              self.batch_size, *self.asked)
        if choice is not None:
            self.padded = choice.padded
            self.plan = self.plan._replace(padded=choice.padded)
            self.tuned = choice.isa if self.onednn_isa == "auto" else None

    def ranked(self, images, top=5, names=None, progress=False):
        """Per image, ``[(probability, class index, name)...]``, the ``top`` best first
        (for a model with several outputs, ``output_values``' dict); ``names`` label the
        images in error messages."""
        outputs = self.logits(images, progress)
        if self.outputs:
            return output_values(outputs, self.outputs, top)
        if outputs.ndim != 2 or self.kind == "features":
            raise InputError("%s: a feature extractor (output %s), not a classifier"
                             % (self.prefix, outputs.shape[1:]))
        finite = np.isfinite(outputs).all(axis=1)
        if not finite.all():
            where = names[int(np.argmin(finite))] if names else "image %d" % np.argmin(finite)
            raise InputError("%s: the output for %s holds NaN or infinity: the %s computation "
                             "overflowed" % (self.prefix, where, self.precision))
        classes = class_names(self.prefix, 2 if self.binary else outputs.shape[1], self.labels)
        return rank_classes(outputs, self.kind, classes, top)

    def predict(self, images, top=5, progress=False):
        """Per image (file paths, encoded bytes, PIL images or ``(H, W, 3)`` 0..255 arrays;
        a folder stands for its images, sorted), the ``top`` classes as ``(name,
        probability)`` pairs, best first: what ``xception-predict`` prints.  A model with
        several outputs gives per image ``{output name: pairs}`` for its class-score
        outputs, ``{output name: [values]}`` for the others."""
        return [row for _, row in self.predict_images(images, top, progress)]

    def predict_images(self, images, top=5, progress=False):
        """``predict``'s rows each with the image it is for: ``[(path, pairs)]``, a folder's
        images by their paths (sorted), an image given as an array or PIL image as
        ``"image K"`` (its place in the list, each folder's images counted)."""
        images = image_list(images)
        names = [str(i) if isinstance(i, (str, os.PathLike)) else "image %d" % k
                 for k, i in enumerate(images)]
        return list(zip(names, self.as_pairs(self.ranked(images, top, names, progress))))

    def as_pairs(self, rows):
        """``ranked``'s rows as ``predict`` gives them: ``(name, probability)`` pairs (for a
        model with several outputs, ``{output name: pairs or values}``)."""
        if self.outputs:
            return [{output: [(name, p) for p, _, name in entries]
                     if is_ranked(entries) else entries
                     for output, entries in row.items()} for row in rows]
        return [[(name, p) for p, _, name in row] for row in rows]
