"""Decide which layer of a Keras file is which Xception layer.

Named layers are found by name.  The four residual convolutions and their
BatchNorms, whose names Keras generates (and which change between Keras
versions and sessions), are found by their shapes, which are distinct.  Keras 3
files that do not record layer names are numbered per class in the order of
``model.layers``; there, the numbering is the format's own identity and the
shapes are checked just the same.  Never by file order alone.
"""
import collections

from .errors import make_sure
from .name_table import BY_NAME, DENSE, KERAS3_CLASS, RGB, ROLES, keras_layers

Match = collections.namedtuple("Match", "include_top classes layers file_names arrays channels")
Match.__doc__ = """The outcome: ``include_top``, ``classes``, the canonical
``Layer`` list, ``{canonical name: name in the file}``,
``{(canonical name, role): ndarray}`` and the input's channel count."""

XCEPTION_MARKERS = ("block1_conv1", "block14_sepconv2")
PREDICTIONS = "predictions"


def _shape_text(shape):
    return "x".join(map(str, shape))


def _weights_text(layer):
    return ", ".join("%s %s" % (role, _shape_text(a.shape)) for role, a in layer.weights.items())


def _label(file_layer):
    return file_layer.name if file_layer.name is not None else file_layer.path


def _detect_top(path, by_name):
    top = by_name.get(PREDICTIONS)
    if top is None:
        return False, None
    kernel = top.weights.get("kernel")
    make_sure(kernel is not None and kernel.ndim == 2,
              "%s: layer 'predictions': expected a Dense kernel (2048, classes), found %s",
              path, _weights_text(top))
    return True, int(kernel.shape[1])


def _detect_channels(by_name):
    """The input channels ``block1_conv1``'s kernel (3, 3, C, 32) reads: 3 for RGB, 1 for a
    grayscale model (its shape is checked with the others)."""
    first = by_name.get(XCEPTION_MARKERS[0])
    kernel = first.weights.get("kernel") if first is not None else None
    if kernel is not None and kernel.ndim == 4 and kernel.shape[2] >= 1:
        return int(kernel.shape[2])
    return RGB


def _name_keras3_layers_by_class_order(path, file_layers, include_top):
    """Keras 3 files without names: the N-th ``<class>`` group is the N-th layer
    of that class in ``model.layers``."""
    expected = collections.defaultdict(list)
    for layer in keras_layers(include_top, 1):
        expected[KERAS3_CLASS[layer.kind]].append(layer.name)
    found = collections.defaultdict(list)
    for fl in file_layers:
        found[fl.keras3_class].append(fl)
    named = []
    for cls, layers in found.items():
        layers.sort(key=lambda fl: fl.keras3_index)
        make_sure(cls in expected and len(layers) == len(expected[cls]),
                  "%s: not Keras Xception weights: %d '%s' layers with weights, Xception has %d",
                  path, len(layers), cls, len(expected.get(cls, ())))
        named.extend(fl._replace(name=name) for fl, name in zip(layers, expected[cls]))
    return named


def match_layers(keras_file):
    """Pair every Xception layer with one layer of ``keras_file``.

    Raises:
        ConversionError: the file is not Xception, lacks a layer, has a layer
            Xception does not have, or a weight of the wrong shape.
    """
    path, file_layers = keras_file.path, list(keras_file.layers)
    if file_layers and all(fl.name is None for fl in file_layers):
        top_guess = any(fl.keras3_class == KERAS3_CLASS[DENSE] for fl in file_layers)
        file_layers = _name_keras3_layers_by_class_order(path, file_layers, top_guess)
    make_sure(all(fl.name is not None for fl in file_layers),
              "%s: some Keras 3 layers record their name and some do not", path)
    by_name = {fl.name: fl for fl in file_layers}
    make_sure(any(marker in by_name for marker in XCEPTION_MARKERS),
              "%s: not Keras Xception weights: no layer named %s; the file has %s", path,
              " or ".join(XCEPTION_MARKERS),
              ", ".join(fl.name for fl in file_layers[:6]) + (", ..." if len(file_layers) > 6
                                                                else "") or "no weights")
    include_top, classes = _detect_top(path, by_name)
    channels = _detect_channels(by_name)
    layers = keras_layers(include_top, classes or 1, channels)
    assigned, unclaimed = {}, {fl.name: fl for fl in file_layers}
    for layer in layers:
        if layer.match == BY_NAME or layer.name in by_name:
            make_sure(layer.name in by_name, "%s: no layer '%s': the file is not a complete "
                      "Keras Xception", path, layer.name)
            assigned[layer.name] = unclaimed.pop(layer.name)
    by_shape = [layer for layer in layers if layer.name not in assigned]
    for fl in list(unclaimed.values()):
        shapes = {role: tuple(a.shape) for role, a in fl.weights.items()}
        candidates = [layer for layer in by_shape if layer.shapes == shapes]
        make_sure(candidates, "%s: layer '%s' (%s) is not part of Keras Xception", path,
                  _label(fl), _weights_text(fl))
        layer = candidates[0]
        make_sure(layer.name not in assigned, "%s: layers '%s' and '%s' both have the shapes of "
                  "%s; cannot tell which is which", path, assigned.get(layer.name, fl).name,
                  fl.name, layer.name)
        assigned[layer.name] = unclaimed.pop(fl.name)
    for layer in by_shape:
        make_sure(layer.name in assigned, "%s: no layer with the shapes of Xception's %s (%s)",
                  path, layer.name, ", ".join("%s %s" % (r, _shape_text(s))
                                              for r, s in layer.shapes.items()))
    arrays = {}
    for layer in layers:
        fl = assigned[layer.name]
        extra = sorted(set(fl.weights) - set(ROLES[layer.kind]))
        make_sure(not extra, "%s: layer '%s' has weights Xception's %s does not have: %s",
                  path, _label(fl), layer.name, ", ".join(extra))
        for role, shape in layer.shapes.items():
            make_sure(role in fl.weights, "%s: layer '%s' lacks its %s weight", path,
                      _label(fl), role)
            found = tuple(fl.weights[role].shape)
            make_sure(found == shape, "%s: layer '%s', weight %s: expected shape %s, found %s",
                      path, _label(fl), role, _shape_text(shape), _shape_text(found))
            arrays[(layer.name, role)] = fl.weights[role]
    file_names = {name: _label(fl) for name, fl in assigned.items()}
    return Match(include_top, classes, layers, file_names, arrays, channels)
