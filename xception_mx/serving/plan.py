"""How a checkpoint runs on this CPU, decided in one place for every command and the Python
API: its precision (the checkpoint's own, ``auto``, or the one asked for), whether its channel
counts are padded to oneDNN's block (``model.padding``: where that is faster), and oneDNN's
instruction-set choice (``cpu.cap_isa``, applied when the network is built)."""
import collections

from xception_mx.errors import make_sure
from xception_mx.model.padding import resolve_padding

OWN_PRECISION = "auto"      # the checkpoint's own: fp32, or what xception-quantize wrote
PRECISIONS = ("fp32", "bf16", "int8")

Plan = collections.namedtuple("Plan", "precision padded onednn_isa")
Plan.__doc__ = """``precision``: fp32, bf16 or int8; ``padded``: whether channel counts are
padded (a serving copy: as ``xception-quantize`` wrote it); ``onednn_isa``: the choice
``cpu.isa_capped`` applies (``auto``: where it is faster)."""


def checked_precision(precision):
    """``precision`` if it is one a checkpoint runs at (``None``: ``auto``)."""
    precision = OWN_PRECISION if precision is None else precision
    make_sure(precision in (OWN_PRECISION,) + PRECISIONS, "precision must be one of %s, got %r",
              ", ".join((OWN_PRECISION,) + PRECISIONS), precision)
    return precision


def plan_inference(meta, precision=OWN_PRECISION, channel_padding="auto", onednn_isa="auto"):
    """The ``Plan`` of a checkpoint (its ``Meta``) at ``precision`` (``auto`` or ``None``: its
    own) with ``channel_padding`` (auto, on, off, or a bool) and ``onednn_isa``."""
    precision = checked_precision(precision)
    precision = meta.precision if precision == OWN_PRECISION else precision
    padded = (meta.padded_convolutions > 0 if meta.is_serving_copy
              else resolve_padding(channel_padding, precision=precision))
    return Plan(precision, padded, onednn_isa)
