"""``keras2mxnet --labels NAMES.txt``: the converted model's class names, one per line in its
output order, written beside the checkpoint as ``PREFIX-labels.txt`` (which prediction and
evaluation read).  The count is checked against the model before anything is written."""
import os

from xception_mx.atomic import write_text
from xception_mx.checkpoint.labels import labels_path, read_labels
from xception_mx.checkpoint.meta import Meta
from xception_mx.model.own_model import is_binary_head, output_kind

from .errors import make_sure


def class_count(meta):
    """How many names the model's classes take (two for a one-unit binary head), or None
    for a model that outputs no class scores (features, several outputs)."""
    if meta.outputs:
        return None
    if meta.is_own_model:
        spec = meta.own_model_spec
        if output_kind(spec) == "features":
            return None
        return 2 if is_binary_head(spec) else meta.num_classes
    return meta.num_classes if meta.include_top else None


def checked_labels(path, prefix, force=False):
    """The names of labels file ``path`` (None passes through), refused when
    ``PREFIX-labels.txt`` exists without ``force``."""
    if path is None:
        return None
    names = read_labels(path)
    make_sure(force or not os.path.exists(labels_path(prefix)),
              "%s: already exists; pass --force to overwrite it", labels_path(prefix))
    return names


def check_label_count(path, names, meta):
    """Refuse a labels file whose count is not the model's classes (``meta``: the
    checkpoint's, as written)."""
    meta = Meta(meta)
    count = class_count(meta)
    make_sure(count is not None, "--labels %s: the model outputs no class scores (%s), so it "
              "takes no class names", path, "several outputs" if meta.outputs else "features")
    make_sure(len(names) == count, "--labels %s: %d names for a model with %d classes%s", path,
              len(names), count, " (a binary head: two names, class 0 then class 1)"
              if count == 2 and meta.num_classes == 1 else "")


def write_labels(prefix, names):
    """Write ``PREFIX-labels.txt``; returns its path."""
    path = labels_path(prefix)
    write_text(path, "\n".join(names) + "\n")
    return path
