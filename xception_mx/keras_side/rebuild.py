"""A user's Keras model rebuilt by Keras, from its config already checked, to compute what
the checkpoint computes: at the size it was converted at, and in float32 where the model
computes in mixed precision."""


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
