"""Evaluate a checkpoint on a labelled folder or RecordIO: decode in worker processes, run the
fast path (and the peers compared, on the same inputs), score."""
import os
import time

import numpy as np

from xception_mx.errors import make_sure
from xception_mx.images.datasets import EvaluationImages, loader
from xception_mx.images.sources import labels_file_of_rec, open_source
from xception_mx.images.transforms import DEFAULT_TRANSFORM
from xception_mx.progress import progress
from xception_mx.serving.runtime import Model, class_probabilities

from . import peers
from .classes import class_mapping, display_names, model_names
from .metrics import top_k
from .report import build_report

CLASSIFIER_KINDS = ("logits", "probabilities")


class Rate:
    """Images per second after the first batch (which also loads and optimises the network)."""

    def __init__(self):
        self.start, self.images, self.first = None, 0, 0

    def batch_done(self, n):
        if self.start is None:
            self.start, self.first = time.perf_counter(), n
        else:
            self.images += n

    @property
    def rate(self):
        elapsed = time.perf_counter() - self.start if self.start else 0.0
        return self.images / elapsed if self.images and elapsed > 0 else None


def open_labelled(path):
    """The data source, refused in one line without the class names evaluation matches."""
    if str(path).endswith(".rec"):
        make_sure(os.path.isfile(labels_file_of_rec(path)), "%s: no labels file %s next to it "
                  "(xception-pack writes one); evaluation matches classes by name", path,
                  labels_file_of_rec(path))
    return open_source(path, min_classes=1)


def check_classifier(model):
    make_sure(not model.outputs and (model.kind in CLASSIFIER_KINDS or model.binary),
              "%s: its output is %s; xception-evaluate scores single-label classifiers (a "
              "softmax or logits output, or one logit or sigmoid unit: binary)", model.prefix,
              "several outputs" if model.outputs else model.kind)


def evaluate(prefix, data, precision="auto", transform=DEFAULT_TRANSFORM, batch_size=32,
             workers=2, labels=None, epoch=0, keras=None, compare=None, log=print, indices=None,
             threshold=None, all_classes=False):
    """The report of checkpoint ``prefix`` on ``data`` (a path, or an opened ``images.sources``
    source and the ``indices`` of its images to score); with ``keras`` (the Keras file it was
    converted from) or ``compare`` (another precision), theirs on the same inputs too.  A
    binary classifier is scored as two classes, class 1 where its probability is at least
    ``threshold`` (default 0.5).  The table covers the classes present (``all_classes``: all
    the model's)."""
    model = Model(prefix, precision, epoch, batch_size)
    check_classifier(model)
    make_sure(threshold is None or model.binary, "--threshold: %s is not a binary classifier "
              "(one logit or sigmoid unit)", prefix)
    make_sure(threshold is None or 0 < threshold < 1, "--threshold must be in (0, 1), got %s",
              threshold)
    if compare:
        peers.check_compare(compare, model)
    source = open_labelled(data) if isinstance(data, (str, os.PathLike)) else data
    data = getattr(source, "root", None) or getattr(source, "rec_path", data)
    classes = 2 if model.binary else int(model.meta.num_classes or 0)
    make_sure(classes > 0, "%s: the meta does not say how many classes the model has", prefix)
    names = model_names(prefix, classes, labels)
    mapping, warning = class_mapping(source.classes, names, classes, data)
    if warning:
        log("warning: %s" % warning)
    scorers, kinds = {"model": lambda x: np.asarray(model.logits(x), np.float64)}, {}
    if keras:
        scorers["keras"] = peers.keras_scorer(keras, prefix, model.meta, model.input_size,
                                              classes, batch_size)
    if compare:
        scorers["compare"], kinds["compare"] = peers.precision_scorer(prefix, compare,
                                                                      batch_size, epoch)
    dataset = EvaluationImages(source, model.input_size, mapping, transform,
                               model.meta.takes_raw_pixels, model.channels, indices)
    raw, truth, order, rate = score_images(dataset, scorers, batch_size, workers)
    # a model that names no classes was matched to the folders in sorted order: their names
    shown = display_names(names, classes) if names else list(source.classes)
    paths = [source.name(int(i)) for i in order]
    probabilities = {name: class_probabilities(values, kinds.get(name, model.kind))
                     for name, values in raw.items()}
    report = build_report(probabilities["model"], truth, shown, paths,
                          (0.5 if threshold is None else threshold) if model.binary else None,
                          all_classes)
    report.update(checkpoint=str(prefix), data=str(data), precision=model.precision,
                  transform=transform, images_per_s=rate)
    if keras:
        report.update(_against(probabilities, "keras", truth, shown, paths), keras=str(keras),
                      max_abs_deviation=float(np.abs(raw["model"] - raw["keras"]).max()))
    if compare:
        report["compare"] = dict(_against(probabilities, "compare", truth, shown, paths),
                                 precision=compare)
    return report


def score_images(dataset, scorers, batch_size, workers):
    """Every scorer's raw outputs over the dataset, decoded in ``workers`` processes: ``(
    {name: outputs}, true classes, source indices, images/s after the first batch)``."""
    outputs = {name: [] for name in scorers}
    truths, order, timer = [], [], Rate()
    with progress(total=len(dataset), desc="evaluate", unit="image") as bar:
        for x, y, index in loader(dataset, batch_size, workers):
            batch = x.asnumpy()
            for name, scorer in scorers.items():
                outputs[name].append(scorer(batch))
            truths.append(y.asnumpy())
            order.append(index.asnumpy())
            bar.update(len(y))
            timer.batch_done(len(y))
    return ({name: np.concatenate(parts) for name, parts in outputs.items()},
            np.concatenate(truths).astype(np.int64), np.concatenate(order), timer.rate)


def _against(probabilities, peer, truth, names, paths):
    """A peer's accuracies and its top-1 agreement with the checkpoint (keys as the report's
    ``keras_*`` or ``compare`` entries)."""
    theirs = probabilities[peer]
    same, differing = peers.agreement(probabilities["model"], theirs, truth, names, paths)
    if peer == "keras":
        return {"keras_top1": top_k(theirs, truth, 1), "keras_top5": top_k(theirs, truth, 5),
                "agreement": same, "keras_disagreements": differing}
    return {"top1": top_k(theirs, truth, 1), "top5": top_k(theirs, truth, 5),
            "agreement": same, "disagreements": differing}
