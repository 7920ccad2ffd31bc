"""Keras Xception files -> MXNet checkpoints (``keras2mxnet``)."""
from xception_mx import configure_threads

configure_threads()

from .converter import convert, convert_file  # noqa: E402
from .errors import ConversionError  # noqa: E402
from .name_table import build_name_table, format_table  # noqa: E402

__all__ = ["convert", "convert_file", "ConversionError", "build_name_table", "format_table"]
