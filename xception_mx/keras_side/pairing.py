"""Which Keras layer is which MXNet output: Keras layers are paired with the network's
internal outputs by name; the layers Keras leaves auto-named (residual convolutions, their
BatchNorms, the adds) by their place in the graph: a residual convolution by its channel
count, its BatchNorm by its input, an add by the block layer feeding it.  Also the probes that
give every paired Keras layer's output for a batch.
"""
import numpy as np

from xception_mx.model.training_only import inference_layers
from xception_mx.model.own_model import PREPROCESSED_OUTPUT, head_layers, layer_output_name
from xception_mx.model.xception import ENTRY_EXIT_BLOCKS

RESIDUAL_BLOCK_BY_CHANNELS = {c2: block for block, _, _, c2, _ in ENTRY_EXIT_BLOCKS}


def _parents(layer):
    """Names of the layers feeding ``layer`` (Keras 3 nodes hold an
    ``operation``, Keras 2's via tf-keras a ``layer``)."""
    return [(getattr(parent, "operation", None) or parent.layer).name
            for parent in layer._inbound_nodes[0].parent_nodes]


def layer_pairs(keras_model, only=None):
    """``[(depth, keras layer name, MXNet internal output name)]`` for every
    layer of a Keras Xception except the input (with ``only``, for the layers
    of those names)."""
    mapped, pairs = {}, []
    for depth, layer in enumerate(keras_model.layers):
        cls, name = type(layer).__name__, layer.name
        if cls == "InputLayer" or (only is not None and name not in only):
            continue
        if cls == "SeparableConv2D":
            out = name + "_pointwise_fwd_output"
        elif cls == "Add":
            block = next(p for p in _parents(layer) if p.startswith("block")).split("_")[0]
            out = block + "_add_output"
        elif cls == "Conv2D" and not name.startswith("block"):
            out = RESIDUAL_BLOCK_BY_CHANNELS[layer.filters] + "_residual_conv_fwd_output"
        elif cls == "BatchNormalization" and not name.startswith("block"):
            out = mapped[_parents(layer)[0]].replace("_residual_conv_", "_residual_bn_")
        elif cls == "GlobalAveragePooling2D":
            out = "avg_pool_fwd_output"
        elif cls == "GlobalMaxPooling2D":
            out = "max_pool_fwd_output"
        else:
            out = name + "_fwd_output"
        mapped[name] = out
        pairs.append((depth, name, out))
    return pairs


def probe_model(keras_model, inputs, outputs, training=False):
    """A model of ``keras_model``'s own Keras (Keras 3 or tf-keras) from
    ``inputs`` to the list ``outputs``, run on NHWC numpy: a list of arrays.  With
    ``training`` it runs in training mode (BatchNorm on batch statistics, which also updates
    the layers' moving statistics)."""
    import importlib
    library = importlib.import_module(type(keras_model).__module__.split(".")[0])
    probe = library.Model(inputs, list(outputs))

    def run(nhwc):
        if training:
            values = probe(nhwc, training=True)
            values = [np.asarray(v) for v in (values if isinstance(values, (list, tuple))
                                              else [values])]
            return values
        values = probe.predict(nhwc, verbose=0)
        return list(values) if isinstance(values, (list, tuple)) else [values]
    return run


def xception_probe(keras_model, training=False):
    """``(pairs, run)`` for a Keras Xception: ``layer_pairs`` and a function
    giving every paired layer's output for an NHWC batch (in training mode with
    ``training``)."""
    pairs = layer_pairs(keras_model)
    return pairs, probe_model(keras_model, keras_model.input,
                              [keras_model.get_layer(n).output for _, n, _ in pairs], training)


def _operation(model, name):
    """The layer, or Keras 3 operation (``TrueDivide``...), named ``name``."""
    for operation in getattr(model, "operations", None) or model.layers:
        if operation.name == name:
            return operation
    return model.get_layer(name)


def own_model_probe(model, own, training=False, layers=None, base_training=None):
    """``(pairs, run)`` as ``xception_probe`` gives them, for an own model (a user's base +
    head model): preprocessing result, base layers, head layers (``layers``: which head
    layers, default all).  With ``training``, in training mode; a nested base in
    ``base_training`` mode (default: ``training``)."""
    spec = own.spec
    outer, pairs = [], []
    base_input = None
    if own.before_base:
        base_input = len(outer)
        outer.append(_operation(model, own.before_base[-1]).output)
        if spec["preprocess"]:
            pairs.append((own.before_base[-1], PREPROCESSED_OUTPUT, ("outer", base_input)))
    inner_run = None
    if own.base_name:
        base = model.get_layer(own.base_name)
        base_pairs = layer_pairs(base)
        inner_run = probe_model(model, base.input,
                                [base.get_layer(n).output for _, n, _ in base_pairs],
                                training if base_training is None else base_training)
        pairs += [(n, mx, ("inner", i)) for i, (_, n, mx) in enumerate(base_pairs)]
    else:
        for _, name, mx in layer_pairs(model, only=set(own.base_layers)):
            pairs.append((name, mx, ("outer", len(outer))))
            outer.append(model.get_layer(name).output)
    for layer in inference_layers(head_layers(spec) if layers is None else layers):
        pairs.append((layer["name"], layer_output_name(layer["name"]), ("outer", len(outer))))
        outer.append(model.get_layer(layer["name"]).output)
    outer_run = probe_model(model, model.inputs, outer, training)

    def run(nhwc):
        values = {"outer": outer_run(nhwc)}
        if inner_run is not None:
            values["inner"] = inner_run(nhwc if base_input is None
                                        else values["outer"][base_input])
        return [values[where][i] for _, _, (where, i) in pairs]
    return [(depth, n, mx) for depth, (n, mx, _) in enumerate(pairs)], run


def canonical_names(keras_model, only=None):
    """``{Keras layer name: canonical name}`` for the layers with weights (the
    residual layers Keras names automatically are found by their place); ``only``: of the
    layers of those names (a flattened base among a model's layers)."""
    names = {}
    for _, keras_name, output in layer_pairs(keras_model, only=only):
        if keras_model.get_layer(keras_name).weights:
            base = output.replace("_pointwise_fwd_output", "").replace("_fwd_output", "")
            names[keras_name] = base
    return names


def set_keras_batchnorm(keras_model, settings):
    """Give a Keras Xception's BatchNorm layers the momentum and epsilon ``settings`` names
    (``{canonical layer: {"momentum", "epsilon"}}``, a checkpoint meta's ``batchnorm``), as
    the file they came from had them.  Returns ``keras_model``."""
    if not settings:
        return keras_model
    canonical = canonical_names(keras_model)
    for layer in keras_model.layers:
        setting = settings.get(canonical.get(layer.name, layer.name))
        if setting and type(layer).__name__ == "BatchNormalization":
            layer.momentum, layer.epsilon = setting["momentum"], setting["epsilon"]
    return keras_model


def set_keras_regularizers(keras_model, regularizers, canonical=True):
    """Give ``keras_model``'s layers the regularizers ``regularizers`` names (``{layer:
    {"kernel_regularizer": {"class_name", "config"}, ...}}``, a checkpoint meta's), by their
    canonical names (an Xception) or their own (``canonical=False``), so that the model
    saved holds them as the file it came from did.  Returns ``keras_model``."""
    if not regularizers:
        return keras_model
    from .loading import import_keras
    keras = import_keras()
    names = canonical_names(keras_model) if canonical else {}
    for layer in keras_model.layers:
        for key, entry in regularizers.get(names.get(layer.name, layer.name), {}).items():
            setattr(layer, key, keras.regularizers.get(
                {"class_name": entry["class_name"], "config": entry["config"]}))
    return keras_model
