"""Class names: ImageNet's for 1000-class models, a labels file for the rest.

The 1000 ImageNet names ship as package data (``data/imagenet_classes.tsv``,
taken from timm 1.0.31, Apache-2.0), in Keras' class index order; nothing is
fetched at run time.
"""
import os

from xception_mx.errors import InputError

IMAGENET_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "data", "imagenet_classes.tsv")
IMAGENET_CLASSES = 1000


def imagenet_classes():
    """``[(synset, "first lemma")]`` in class index order."""
    classes = []
    with open(IMAGENET_FILE) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            synset, lemmas = line.rstrip("\n").split("\t")
            classes.append((synset, lemmas.split(",")[0].strip()))
    return classes


def imagenet_names():
    """``"tabby (n02123045)"``-style names for the 1000 ImageNet classes."""
    return ["%s (%s)" % (lemma, synset) for synset, lemma in imagenet_classes()]


def read_labels(path):
    """A labels file: one class name per line, in class index order."""
    try:
        with open(path) as f:
            labels = [line.rstrip("\n") for line in f]
    except OSError as exc:
        raise InputError("%s: cannot read labels file (%s)" % (path, exc.strerror or exc))
    while labels and not labels[-1].strip():
        labels.pop()
    if not labels:
        raise InputError("%s: labels file is empty" % path)
    return labels


def labels_path(prefix):
    """Where a checkpoint's labels file lives: ``PREFIX-labels.txt``."""
    return "%s-labels.txt" % prefix


def labelled_names(prefix, classes, labels=None):
    """The names of a labels file for a model with ``classes`` outputs: ``labels`` if given,
    else ``PREFIX-labels.txt`` if present; ``None`` without one."""
    path = labels or (labels_path(prefix) if os.path.exists(labels_path(prefix)) else None)
    if not path:
        return None
    names = read_labels(path)
    if len(names) != classes:
        raise InputError("%s: %d labels for a model with %d classes"
                         % (path, len(names), classes))
    return names


def class_names(prefix, classes, labels=None):
    """Names for a model with ``classes`` outputs: ``labels`` if given, else
    ``PREFIX-labels.txt`` if present, else ImageNet's for 1000 classes, else
    ``class N``."""
    names = labelled_names(prefix, classes, labels)
    if names:
        return names
    if classes == IMAGENET_CLASSES:
        return imagenet_names()
    return ["class %d" % i for i in range(classes)]
