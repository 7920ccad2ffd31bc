"""``PREFIX-meta.json``: what a checkpoint says about itself, built and read in one place.

``Meta`` wraps the parsed JSON object; its accessors answer what the rest of the package
asks (input size and channels, own model's spec, precision...), so no other module reads the
dict's keys.  ``build_meta`` makes the record each writer (keras2mxnet, xception-finetune's
export, xception-quantize's serving copy) stores, field for field and in the order each has
always written: the files on disk are read by users and tests.
"""
from collections.abc import Mapping

from xception_mx.errors import InputError

KERAS2MXNET = "xception-mx keras2mxnet"
FINETUNE = "xception-mx xception-finetune"
QUANTIZE = "xception-mx xception-quantize"

# The fields each writer records, in their order in the file (json.dump keeps it).
FIELDS = {
    KERAS2MXNET: ("producer", "source", "model", "epoch", "input", "name_table",
                  "frozen_layers", "batchnorm", "regularizers", "recipe"),
    FINETUNE: ("producer", "model", "epoch", "trained_epoch", "metrics", "classes", "input",
               "training", "frozen_layers", "batchnorm", "regularizers", "source", "recipe"),
    QUANTIZE: ("producer", "precision", "model", "source_checkpoint", "optimized",
               "calibration"),
}


def build_meta(producer, base=None, **fields):
    """The meta record ``producer`` (``KERAS2MXNET``, ``FINETUNE`` or ``QUANTIZE``) writes:
    its ``fields`` in ``FIELDS[producer]``'s order, those passed as ``None`` left out.
    ``base``: the meta of the checkpoint a serving copy is made from; its fields are kept
    (those given replace theirs in place) but its name table, which no longer fits."""
    order = FIELDS[producer]
    unknown = sorted(set(fields) - set(order))
    if unknown:
        raise ValueError("%s does not write meta fields %s" % (producer, ", ".join(unknown)))
    meta = dict(as_meta(base).raw) if base is not None else {}
    fields["producer"] = producer
    for key in order:
        if fields.get(key) is not None:
            meta[key] = fields[key]
    if base is not None:
        meta.pop("name_table", None)
    return meta


def as_meta(meta):
    """``meta`` as a ``Meta``: one as it is, a dict wrapped, ``None`` as an empty one."""
    return meta if isinstance(meta, Meta) else Meta(meta)


class Meta(Mapping):
    """A checkpoint's meta (empty for a checkpoint written without one).

    Read it through the accessors; ``raw`` is the JSON object for writing.  It is also a
    read-only mapping of that object, so code that read ``read_meta``'s dict keeps working
    for one release.
    """

    def __init__(self, raw=None):
        self._raw = dict(raw or {})

    @property
    def raw(self):
        """The JSON object as parsed (a dict; not to be changed in place)."""
        return self._raw

    def __getitem__(self, key):
        return self._raw[key]

    def __iter__(self):
        return iter(self._raw)

    def __len__(self):
        return len(self._raw)

    def __repr__(self):
        return "Meta(%r)" % (self._raw,)

    # --- the model --------------------------------------------------------------------

    @property
    def model(self):
        """The network's configuration (``{}`` where the meta has none)."""
        return self._raw.get("model", {})

    @property
    def is_own_model(self):
        """Whether the checkpoint is a user's own model (base + head)."""
        return self.model.get("kind") == "transfer"

    @property
    def own_model_spec(self):
        """An own model's spec (its preprocessing, base and head); ``KeyError`` for
        another checkpoint."""
        return self._raw["model"]["transfer"]

    def input_size(self, default=(299, 299)):
        """``(H, W)`` the checkpoint was built for; ``default`` where the meta does not say."""
        shape = self.model.get("input_shape")
        if shape:
            return tuple(shape)
        return tuple(default) if default else None

    @property
    def channels(self):
        """Input channels (3 where the meta predates the key, or there is none)."""
        return int(self.model.get("channels", 3))

    @property
    def num_classes(self):
        """The number of classes the model outputs, or ``None``."""
        return self.model.get("classes")

    @property
    def include_top(self):
        """Whether plain Xception has its classifier (``True`` where the meta does not say)."""
        return self.model.get("include_top", True)

    @property
    def pooling(self):
        """Plain Xception's pooling without its top (``None``, ``"avg"`` or ``"max"``)."""
        return self.model.get("pooling")

    @property
    def classifier_activation(self):
        """A plain Xception's classifier activation: ``"softmax"`` or ``None`` (logits)."""
        return self.model.get("classifier_activation", "softmax")

    @property
    def outputs(self):
        """The specs of a model's several outputs, or ``None`` for one output."""
        return self.model.get("outputs")

    @property
    def takes_raw_pixels(self):
        """Whether ``data`` is raw 0..255 pixels (the model preprocesses inside) rather
        than Keras' ``x / 127.5 - 1``."""
        return list(self._raw.get("input", {}).get("range", [-1.0, 1.0])) == [0.0, 255.0]

    @property
    def input_convention(self):
        """What ``data`` takes, as the writer recorded it (layout, colour, scale, range...):
        a dict, empty where the meta does not say."""
        return dict(self._raw.get("input", {}))

    # --- where it came from -------------------------------------------------------------

    @property
    def class_names(self):
        """The class names a fine-tuning export records, in class index order, or ``None``."""
        return self._raw.get("classes")

    @property
    def source(self):
        """The Keras file it was converted from (``path``, ``keras_version``...), or ``None``."""
        return self._raw.get("source")

    @property
    def keras_version(self):
        """The version of Keras that wrote the source file, or ``None``."""
        return (self.source or {}).get("keras_version")

    @property
    def batchnorm(self):
        """``{Keras layer: {"momentum", "epsilon"}}`` of the BatchNorm layers whose settings
        are not Keras' defaults (empty where the meta names none)."""
        return dict(self._raw.get("batchnorm") or {})

    @property
    def regularizers(self):
        """``{Keras layer: {"kernel_regularizer": {"class_name", "config"}, ...}}`` as the file
        saved them (empty where the meta names none)."""
        return dict(self._raw.get("regularizers") or {})

    @property
    def recipe(self):
        """The training recipe the Keras file was compiled with (``optimizer``, ``loss``,
        ``loss_weights`` as Keras saved them), or ``None``."""
        return self._raw.get("recipe")

    @property
    def name_table(self):
        """keras2mxnet's rows (Keras layer and weight -> MXNet parameter), or ``None``."""
        return self._raw.get("name_table")

    @property
    def frozen_layers(self):
        """The layers saved non-trainable (a list, empty where the meta names none)."""
        return list(self._raw.get("frozen_layers") or [])

    @property
    def epoch(self):
        """The epoch number of its parameters file."""
        return self._raw.get("epoch", 0)

    def file_record(self, key):
        """``{"name", "sha256"}`` of its ``"params"`` or ``"symbol"`` file, or ``None``."""
        return self._raw.get("files", {}).get(key)

    # --- serving copies (xception-quantize) ---------------------------------------------

    @property
    def precision(self):
        """``fp32``, or the precision of an optimized serving copy."""
        return self._raw.get("precision", "fp32")

    @property
    def is_serving_copy(self):
        """Whether it is an optimized copy written by ``xception-quantize`` (int8, bf16, or
        fused fp32 with padded channels) rather than a Keras-shaped fp32 checkpoint."""
        return self.precision != "fp32" or "optimized" in self._raw

    def source_checkpoint(self, default=None):
        """The checkpoint a serving copy was made from (``default`` for another)."""
        return self._raw.get("source_checkpoint", default)

    @property
    def padded_convolutions(self):
        """How many convolutions a serving copy has with channels padded (0: none)."""
        return self._raw.get("optimized", {}).get("padded_convolutions", 0)

    def require_keras_shaped(self, prefix, purpose):
        """Refuse an optimized serving copy where Keras' shapes and layers are needed."""
        if self.is_serving_copy:
            raise InputError("%s: an optimized %s checkpoint for serving (xception-quantize); "
                             "%s needs the fp32 checkpoint it came from (%s)"
                             % (prefix, self.precision, purpose, self.source_checkpoint("?")))
