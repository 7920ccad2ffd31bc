"""Which of the model's classes each of the data's classes is, matched by name.

The model's names come from ``PREFIX-labels.txt``, else, for a 1000-class model, ImageNet's:
a data class named ``n01440764`` (an ImageNet synset folder), ``tench`` or ``tench
(n01440764)`` is class 0.  A data class the model does not name is refused in one line.  A
model that names no classes is matched by sorted order when the counts agree, with a warning
that says so.
"""
from xception_mx.checkpoint.labels import IMAGENET_CLASSES, imagenet_classes, labelled_names
from xception_mx.errors import make_sure


def model_names(prefix, classes, labels=None):
    """``[set of names of class i]`` for a model of ``classes`` outputs (``labels``: a labels
    file given instead of ``PREFIX-labels.txt``), or ``None``: the model names none."""
    names = labelled_names(prefix, classes, labels)
    if names:
        return [{name.strip()} for name in names]
    if classes == IMAGENET_CLASSES:
        return [{synset, lemma, "%s (%s)" % (lemma, synset)}
                for synset, lemma in imagenet_classes()]
    return None


def display_names(names, classes):
    """One name per model class: the labels file's, ImageNet's ``lemma (synset)``, or
    ``class N``."""
    if names is None:
        return ["class %d" % i for i in range(classes)]
    return [max(n, key=len) for n in names]


def class_mapping(data_classes, names, classes, where):
    """``(model class of each data class, warning or None)``.

    Raises:
        InputError: a data class the model does not name, or, for a model without names,
            another class count than the data's.
    """
    if names is None:
        make_sure(len(data_classes) == classes, "%s: %d classes (%s), the model has %d and names "
                  "none: give --labels FILE with its class names", where, len(data_classes),
                  ", ".join(data_classes[:4]), classes)
        return list(range(classes)), ("the model names no classes: the data's %d classes are "
                                      "taken as its classes 0..%d in sorted order, and named "
                                      "after them (keras2mxnet --labels FILE records the "
                                      "model's own names)" % (classes, classes - 1))
    index = {}
    for i, aliases in enumerate(names):
        for alias in aliases:
            index.setdefault(alias, i)
    unknown = [c for c in data_classes if c not in index]
    make_sure(not unknown, "%s: %s %s the model's %d classes (%s)", where,
              _listed(["'%s'" % c for c in unknown], 8),
              "is not one of" if len(unknown) == 1 else "are not among", classes,
              _listed(display_names(names, classes), 12))
    return [index[c] for c in data_classes], None


def _listed(items, at_most):
    """``a, b, c`` for a few items; the first ``at_most`` and how many more for many."""
    if len(items) <= at_most:
        return ", ".join(items)
    return "%s and %d more" % (", ".join(items[:at_most]), len(items) - at_most)
