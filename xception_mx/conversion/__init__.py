"""Keras Xception files -> MXNet checkpoints (``keras2mxnet``, ``mxnet2keras``)."""
from .converter import convert, convert_file
from .errors import ConversionError
from .name_table import build_name_table, format_table

__all__ = ["convert", "convert_file", "ConversionError", "build_name_table", "format_table"]
