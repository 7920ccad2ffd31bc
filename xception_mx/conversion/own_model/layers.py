"""One layer of an own model's config, translated into an entry of the
network description (``xception_mx.model.own_model``): a head layer, or the
preprocessing operations of a layer before the base.  Anything else is
refused with the layer's name and class.
"""
import numpy as np

from xception_mx.model.augmentation import augmentation_op
from xception_mx.model.head_layers import ACTIVATIONS, IDENTITY_LAYERS
from xception_mx.model.regularizers import regularizer_entry
from xception_mx.model.training_only import REGULARIZER_CLASSES
from xception_mx.model.own_model_inputs import INTEGER_RANGES, RESIZE_INTERPOLATIONS
from xception_mx.model.xception import MIN_INPUT_SIZE

from ..errors import ConversionError, make_sure
from .keras_config import INPUT_CLASSES, first_arg_is_tensor, inbound, layer_name

# Scalar arithmetic on the symbolic input (``preprocess_input``): Keras 2
# records ``TFOpLambda`` layers named after the TF function, Keras 3 operation
# layers named after the op class.
SCALAR_OPS = {
    "math.truediv": "divide", "math.divide": "divide", "__operators__.truediv": "divide",
    "math.subtract": "subtract", "__operators__.sub": "subtract",
    "math.multiply": "multiply", "__operators__.mul": "multiply",
    "math.add": "add", "__operators__.add": "add",
    "TrueDivide": "divide", "Divide": "divide", "Subtract": "subtract",
    "Multiply": "multiply", "Add": "add",
}
COMMUTATIVE = ("add", "multiply")
PREPROCESSING_CLASSES = ("Rescaling", "Normalization", "Resizing", "CenterCrop")
AUGMENTATION_CLASSES = ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                        "RandomContrast", "RandomBrightness")
SUPPORTED_TEXT = ("supported: InputLayer, Rescaling, Normalization, Resizing, CenterCrop, "
                  "preprocess_input "
                  "arithmetic, identity augmentation layers; the Xception base; "
                  "GlobalAverage/MaxPooling2D, Flatten, Dense, Activation, ReLU, LeakyReLU, "
                  "Softmax, BatchNormalization, Dropout-like layers")


LAMBDA_HINT = ("a Lambda layer holds Python code, which is never run from a file; for "
               "preprocess_input use Rescaling(1 / 127.5, offset=-1), or call preprocess_input "
               "on the symbolic input")


def refuse(path, layer, why):
    if layer.get("class_name") == "Lambda":
        why = LAMBDA_HINT
    raise ConversionError("%s: layer '%s' (%s): %s; %s" % (
        path, layer_name(layer), layer.get("class_name"), why, SUPPORTED_TEXT))



def activation(path, layer, name):
    make_sure(name in ACTIVATIONS, "%s: layer '%s' (%s): activation '%s' is not supported "
              "(supported: %s)", path, layer_name(layer), layer.get("class_name"), name,
              ", ".join(sorted(ACTIVATIONS)))
    return name



def input_ops(path, input_layer):
    """The model input's own operation: Keras casts what it is fed to an
    integer-typed input (``Input(dtype="uint8")``); float32 (and float64,
    computed in float32) take the value as it is."""
    dtype = input_layer.get("config", {}).get("dtype") or "float32"
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    if dtype in INTEGER_RANGES:
        return [{"op": "cast", "dtype": dtype}]
    make_sure(dtype in ("float32", "float64"), "%s: layer '%s' (%s): input dtype %s is not "
              "supported (supported: float32, float64, %s)", path, layer_name(input_layer),
              input_layer.get("class_name"), dtype, ", ".join(INTEGER_RANGES))
    return []


def _sizing_target(path, layer):
    """``[height, width]`` a ``Resizing`` or ``CenterCrop`` gives, which the
    base must take (channels last)."""
    cfg, name, cls = layer.get("config", {}), layer_name(layer), layer.get("class_name")
    make_sure(cfg.get("data_format") in (None, "channels_last"), "%s: layer '%s' (%s): "
              "data_format %s is not supported (channels_last)", path, name, cls,
              cfg.get("data_format"))
    size = [cfg.get("height"), cfg.get("width")]
    make_sure(all(isinstance(s, int) and s >= MIN_INPUT_SIZE for s in size), "%s: layer '%s' "
              "(%s): gives %sx%s images; the Xception base needs height and width >= %d",
              path, name, cls, size[0], size[1], MIN_INPUT_SIZE)
    return size


def resize_op(path, layer):
    """Keras ``Resizing``: bilinear, without antialiasing or aspect-ratio
    cropping/padding (what TF's ``tf.image.resize`` computes by default)."""
    cfg, name = layer.get("config", {}), layer_name(layer)
    interpolation = cfg.get("interpolation", "bilinear")
    make_sure(interpolation in RESIZE_INTERPOLATIONS, "%s: layer '%s' (Resizing): interpolation "
              "'%s' is not supported (supported: %s)", path, name, interpolation,
              ", ".join(RESIZE_INTERPOLATIONS))
    for option in ("crop_to_aspect_ratio", "pad_to_aspect_ratio", "antialias"):
        make_sure(not cfg.get(option), "%s: layer '%s' (Resizing): %s=True is not supported",
                  path, name, option)
    return {"op": "resize", "name": name, "size": _sizing_target(path, layer),
            "interpolation": interpolation}


def head_entry(path, layer):
    """The head spec entry of one layer (``None`` for identity layers)."""
    cls, cfg, name = layer.get("class_name"), layer.get("config", {}), layer_name(layer)
    if cls in REGULARIZER_CLASSES:
        return regularizer_entry(cls, name, cfg)
    if cls in IDENTITY_LAYERS:
        return None
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        make_sure(not cfg.get("keepdims"), "%s: layer '%s' (%s): keepdims=True is not "
                  "supported", path, name, cls)
        return {"class": cls, "name": name}
    if cls == "Flatten":
        return {"class": cls, "name": name}
    if cls == "Dense":
        return {"class": cls, "name": name, "units": int(cfg["units"]),
                "use_bias": bool(cfg.get("use_bias", True)),
                "activation": activation(path, layer, cfg.get("activation") or "linear")}
    if cls == "Activation":
        return {"class": cls, "name": name,
                "activation": activation(path, layer, cfg.get("activation"))}
    if cls == "ReLU":
        return {"class": cls, "name": name, "max_value": cfg.get("max_value"),
                "negative_slope": float(cfg.get("negative_slope") or 0.0),
                "threshold": float(cfg.get("threshold") or 0.0)}
    if cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        return {"class": cls, "name": name, "negative_slope": float(slope)}
    if cls == "Softmax":
        axis = cfg.get("axis", -1)
        make_sure(axis in (-1, [-1]), "%s: layer '%s' (Softmax): only axis -1 is supported, "
                  "got %s", path, name, axis)
        return {"class": cls, "name": name}
    if cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        make_sure(axis in (-1, [-1], 3, [3], 1, [1]), "%s: layer '%s' (BatchNormalization): "
                  "only the channel axis is supported, got %s", path, name, axis)
        return {"class": cls, "name": name, "epsilon": float(cfg.get("epsilon", 1e-3)),
                "momentum": float(cfg.get("momentum", 0.99)),
                "center": bool(cfg.get("center", True)), "scale": bool(cfg.get("scale", True)),
                "axis": -1}                     # the channel axis, however the file says it
    refuse(path, layer, "not a layer a head may hold")



def preprocess_ops(path, layer):
    """The preprocessing operations of one layer before the base."""
    cls, cfg, name = layer.get("class_name"), layer.get("config", {}), layer_name(layer)
    if cls in REGULARIZER_CLASSES:          # noise on the images, say: acts in training
        return [dict(regularizer_entry(cls, name, cfg), op="regularize")]
    if cls in AUGMENTATION_CLASSES:
        try:
            return [augmentation_op(cls, name, cfg)]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConversionError("%s: layer '%s' (%s): %s" % (path, name, cls, exc))
    if cls in IDENTITY_LAYERS:
        return []
    if cls == "Sequential":
        ops = []
        for inner in cfg.get("layers", []):
            if inner.get("class_name") in INPUT_CLASSES:
                continue
            make_sure(inner.get("class_name") in IDENTITY_LAYERS + AUGMENTATION_CLASSES or
                      inner.get("class_name") in PREPROCESSING_CLASSES,
                      "%s: layer '%s' (%s) inside '%s': not a preprocessing layer; %s", path,
                      layer_name(inner), inner.get("class_name"), name, SUPPORTED_TEXT)
            ops += preprocess_ops(path, inner)
        return ops
    if cls == "Rescaling":
        scale, offset = cfg.get("scale", 1.0), cfg.get("offset", 0.0)
        make_sure(isinstance(scale, (int, float)) and isinstance(offset, (int, float)),
                  "%s: layer '%s' (Rescaling): only scalar scale and offset are supported",
                  path, name)
        # Keras casts the Python floats to a float32 tensor first (then to the compute type):
        # a float64 model rescales by the float32 values too
        return [{"op": "multiply", "value": float(np.float32(scale))},
                {"op": "add", "value": float(np.float32(offset))}]
    if cls == "Normalization":
        make_sure(not cfg.get("invert"), "%s: layer '%s' (Normalization): invert=True is not "
                  "supported", path, name)
        axis = cfg.get("axis", -1)
        make_sure(axis in (-1, [-1], 3, [3]), "%s: layer '%s' (Normalization): only the "
                  "channel axis is supported, got %s", path, name, axis)
        return [{"op": "normalize", "name": name, "mean": cfg.get("mean"),
                 "variance": cfg.get("variance")}]
    if cls == "Resizing":
        return [resize_op(path, layer)]
    if cls == "CenterCrop":
        return [{"op": "center_crop", "name": name, "size": _sizing_target(path, layer)}]
    function = cfg.get("function") if cls == "TFOpLambda" else cls
    if function in SCALAR_OPS:
        op = SCALAR_OPS[function]
        tensors, constants = inbound(layer)
        first_is_tensor = first_arg_is_tensor(layer)
        make_sure(len(tensors) == 1 and len(constants) == 1 and
                  isinstance(constants[0], (int, float)),
                  "%s: layer '%s' (%s): only arithmetic of the input with one number is "
                  "supported", path, name, cls)
        make_sure(first_is_tensor or op in COMMUTATIVE, "%s: layer '%s' (%s): a number %s the "
                  "input is not supported (only input %s number)", path, name, cls,
                  {"subtract": "minus", "divide": "divided by"}.get(op, op),
                  {"subtract": "-", "divide": "/"}.get(op, op))
        return [{"op": op, "value": float(constants[0])}]
    refuse(path, layer, "not a layer that may come before the Xception base")
