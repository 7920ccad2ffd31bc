"""Parity of a user's transfer model (Xception base + head) and its checkpoint.

The Keras model is loaded whole, by the Keras that wrote it (``keras_side.
load_user_model``), after its architecture has been checked with ``convert``'s
JSON reader (so no code from the file runs, and a file holding another model
than the checkpoint's is refused).  Both sides get the same tensor in the
checkpoint's input convention and are compared on the model's own output.
Per layer: what enters the base (after the preprocessing layers), every base
layer, every head layer.
"""
from xception_mx.conversion.transfer.architecture import read_transfer
from xception_mx.conversion.keras_reader import read_keras_file
from xception_mx.conversion.transfer.keras_config import model_config
from xception_mx.errors import InputError
from xception_mx.model.training_only import inference_layers, inference_spec
from xception_mx.model.transfer import (PREPROCESSED_OUTPUT, branches, head_layers,
                                        layer_output_name)

from . import keras_side
from .layers import layer_pairs, probe_model


def _first_difference(checkpoint, keras_file):
    """Where two ``structure``s first differ, in words."""
    for key in ("preprocess", "base", "head", "branches"):
        ours, theirs = checkpoint[key], keras_file[key]
        if ours == theirs:
            continue
        if isinstance(ours, list):
            for i in range(max(len(ours), len(theirs))):
                a = ours[i] if i < len(ours) else None
                b = theirs[i] if i < len(theirs) else None
                if a != b:
                    return "%s step %d is %s in the file, %s in the checkpoint" % (key, i + 1,
                                                                                   b, a)
        return "%s is %s in the file, %s in the checkpoint" % (key, theirs, ours)
    return "no difference"


def structure(spec):
    """What must agree between a Keras file and a checkpoint: the layers and
    their settings (a Normalization's statistics are compared as outputs, and
    may be in the config or in the weights)."""
    spec = inference_spec(spec)        # checkpoints before #28 did not record the others
    preprocess = [{k: v for k, v in op.items() if k not in ("mean", "variance")}
                  for op in spec["preprocess"]]
    return {"preprocess": preprocess, "base": spec["base"], "head": spec["head"],
            "branches": branches(spec)}


def read_file_transfer(keras_path, checkpoint_spec, prefix):
    """The ``Transfer`` of ``keras_path``, which must be the checkpoint's model."""
    config = model_config(read_keras_file(keras_path, weights=False))   # Keras reads them
    if config is None:
        raise InputError("%s: a weights-only file; %s is a transfer model, whose parity needs "
                         "the whole Keras model (model.save('model.keras'))"
                         % (keras_path, prefix))
    transfer = read_transfer(keras_path, config)
    ours, theirs = structure(checkpoint_spec), structure(transfer.spec)
    if ours != theirs:
        raise InputError("%s: not the model %s was converted from: %s"
                         % (keras_path, prefix, _first_difference(ours, theirs)))
    return transfer


def load_transfer_model(keras_path):
    """The Keras model, or one line saying why Keras cannot load it."""
    try:
        return keras_side.load_user_model(keras_path)
    except ImportError as exc:
        raise InputError("%s: written by Keras 2; loading it needs tf-keras (pip install "
                         "--no-deps tf-keras==2.17.0): %s" % (keras_path, exc))
    except Exception as exc:            # Keras raises many types on a file it cannot read
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "Unknown layer" in text and keras_path.endswith(".h5"):
            hint = " (Keras 3 writes preprocess_input into .h5 files as layers it cannot read " \
                   "back; save the model as .keras)"
        raise InputError("%s: Keras itself cannot load this model: %s%s"
                         % (keras_path, text, hint))


def _input_shapes(config, shape):
    """Every ``InputLayer`` in ``config`` (a layer's or a list's) at ``shape`` (its channels
    kept)."""
    if isinstance(config, dict):
        if config.get("class_name") == "InputLayer":
            for key in ("batch_shape", "batch_input_shape"):
                if key in config.get("config", {}):
                    channels = (config["config"][key] or [None] * 4)[-1] or 3
                    config["config"][key] = [None, shape[0], shape[1], channels]
        for value in config.values():
            _input_shapes(value, shape)
    elif isinstance(config, list):
        for value in config:
            _input_shapes(value, shape)


def _set_input_sizes(layers, size):
    """The model's own ``InputLayer`` (in its config's ``layers``) at ``size``;
    those of nested models (the base, preprocessing ``Sequential``s) at any
    size, so that each takes what reaches it (the model's own ``Resizing`` or
    ``CenterCrop`` changes the size on the way)."""
    for layer in layers:
        _input_shapes(layer, size if layer.get("class_name") == "InputLayer" else (None, None))


def replace_policies(config, replacement, found=None):
    """Every dtype policy in a model config (Keras 3's ``DTypePolicy``, Keras 2's ``Policy``,
    or a policy name) for which ``replacement(name)`` gives a name set to it, in place; the
    names replaced are added to ``found`` (returned)."""
    found = set() if found is None else found
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "dtype" and isinstance(value, str) and replacement(value):
                found.add(value)
                config[key] = replacement(value)
            elif key == "dtype" and isinstance(value, dict) and replacement(
                    str(value.get("config", {}).get("name", ""))):
                found.add(value["config"]["name"])
                value["config"]["name"] = replacement(value["config"]["name"])
            else:
                replace_policies(value, replacement, found)
    elif isinstance(config, list):
        for value in config:
            replace_policies(value, replacement, found)
    return found


def _float32_policies(config, found):
    """Every mixed-precision policy in a model config set to float32; the names replaced are
    added to ``found``."""
    replace_policies(config, lambda name: "float32" if name.startswith("mixed_") else None,
                     found)


def as_converted(model, size):
    """``(model, mixed)``: ``model``, or the same model and weights rebuilt by
    Keras (from the config already checked) to compute what the checkpoint
    computes: at ``size`` when the checkpoint was converted at another size
    than the model declares (``keras2mxnet --input-shape``), and in float32
    when the model computes in mixed precision (its weights are float32, the
    checkpoint's too).  ``mixed``: the mixed policy's name, or ``None``."""
    config, found = model.get_config(), set()
    _float32_policies(config, found)
    if tuple(model.input_shape[1:3]) == tuple(size) and not found:
        return model, None
    _set_input_sizes(config.get("layers", []), size)
    rebuilt = type(model).from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt, ", ".join(sorted(found)) or None


def _operation(model, name):
    """The layer, or Keras 3 operation (``TrueDivide``...), named ``name``."""
    for operation in getattr(model, "operations", None) or model.layers:
        if operation.name == name:
            return operation
    return model.get_layer(name)


def transfer_probe(model, transfer, training=False, layers=None, base_training=None):
    """``(pairs, run)`` as ``layers.xception_probe`` gives them, for a
    transfer model: preprocessing result, base layers, head layers (``layers``: which head
    layers, default all).  With ``training``, in training mode; a nested base in
    ``base_training`` mode (default: ``training``)."""
    spec = transfer.spec
    outer, pairs = [], []
    base_input = None
    if transfer.before_base:
        base_input = len(outer)
        outer.append(_operation(model, transfer.before_base[-1]).output)
        if spec["preprocess"]:
            pairs.append((transfer.before_base[-1], PREPROCESSED_OUTPUT, ("outer", base_input)))
    inner_run = None
    if transfer.base_name:
        base = model.get_layer(transfer.base_name)
        base_pairs = layer_pairs(base)
        inner_run = probe_model(model, base.input,
                                [base.get_layer(n).output for _, n, _ in base_pairs],
                                training if base_training is None else base_training)
        pairs += [(n, mx, ("inner", i)) for i, (_, n, mx) in enumerate(base_pairs)]
    else:
        for _, name, mx in layer_pairs(model, only=set(transfer.base_layers)):
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
