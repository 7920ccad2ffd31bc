"""The training recipe a Keras file carries: the optimizer, learning-rate schedule and loss it
was compiled with (Keras 3's ``compile_config``, Keras 2's ``training_config``, recorded by
keras2mxnet in the checkpoint's meta as ``recipe``), read as JSON and turned into this
toolkit's settings, or refused in one line naming what is not supported and the flag that
replaces it.  Nothing from the file is imported or executed."""
import collections

from xception_mx.errors import InputError

from . import schedules
from .keras_optimizers import KERAS_DEFAULTS
from .losses import CATEGORICAL, LOSS_NAMES, Loss
from .optimizers import FAMILY, COMMON_FLAGS, SETTING_OF_KERAS

OPTIMIZER_OF_CLASS = {"SGD": "keras-sgd", "Adam": "keras-adam", "AdamW": "keras-adamw",
                      "RMSprop": "keras-rmsprop", "Nadam": "keras-nadam"}
# Keras 2's optimizers before 2.11 (and tf.keras' "legacy" ones): the same SGD and Adam
# updates; their RMSprop puts epsilon inside the square root and their Nadam has another
# momentum schedule
LEGACY_SAME = ("SGD", "Adam")
NOT_SETTINGS = ("name", "jit_compile", "is_legacy_optimizer", "ema_momentum",
                "ema_overwrite_frequency", "learning_rate", "lr", "decay")
# set to anything but these, a setting changes the training in a way not reproduced here
UNSUPPORTED_UNLESS = {"use_ema": (False, None), "amsgrad": (False, None),
                      "gradient_accumulation_steps": (None, 0, 1),
                      "loss_scale_factor": (None, 1, 1.0)}
LOSS_KEYS = ("from_logits", "label_smoothing", "reduction", "axis", "ignore_class", "name",
             "fn", "dtype")
REDUCTIONS = (None, "auto", "sum_over_batch_size")

FileRecipe = collections.namedtuple("FileRecipe", "optimizer lr settings schedule loss text")
FileRecipe.__doc__ = """A file's recipe in this toolkit's terms: ``optimizer`` (``keras-adam``
...) or ``None`` (compiled without one), its learning rate ``lr`` (the schedule's peak with a
schedule), ``settings`` (``{setting: value}`` as ``optimizers.SETTINGS`` names them),
``schedule`` (a checked Keras schedule, or ``None`` for a constant rate), ``loss`` (a
``losses.Loss``, or ``None``) and ``text``, the recipe as Keras would write it."""


def read_recipe(raw, where, head_output="logits", keras_version=None, binary=False):
    """The ``FileRecipe`` of a checkpoint meta's ``recipe`` (``None`` for a file compiled
    without one); ``head_output``: what the model outputs (``logits`` or ``probabilities``),
    which decides whether the loss's ``from_logits`` fits it; ``where`` names the file;
    ``keras_version``: the Keras that wrote it; ``binary``: the head ends in one unit."""
    if not raw:
        return None
    optimizer, lr, settings, schedule, parts = None, None, {}, None, []
    if raw.get("optimizer"):
        optimizer, lr, settings, schedule, text = _optimizer(raw["optimizer"], where,
                                                             keras_version)
        parts.append(text)
    loss = _loss(raw.get("loss"), raw.get("loss_weights"), where, head_output, binary)
    if loss is not None:
        parts.append("%s(%s)" % (loss.class_name, "label_smoothing=%g" % loss.label_smoothing
                                 if loss.label_smoothing else ""))
    if optimizer is None and loss is None:
        return None
    return FileRecipe(optimizer, lr, settings, schedule, loss, ", ".join(parts))


def _refuse(where, what, replaced_by, supported=()):
    raise InputError("%s: %s is not supported%s; %s replaces it (or --recipe default, which "
                     "ignores the file's recipe)" % (
                         where, what, " (supported: %s)" % ", ".join(supported)
                         if supported else "", replaced_by))


def _optimizer(entry, where, keras_version):
    """``(name, lr, settings, schedule, text)`` of the file's optimizer."""
    if isinstance(entry, str):
        entry = {"class_name": entry, "config": {}}
    cls = str(entry.get("class_name", "")).split(">")[-1]     # tf-keras: "Custom>Adam"
    config = dict(entry.get("config") or {})
    if cls not in OPTIMIZER_OF_CLASS:
        _refuse(where, "the optimizer %s" % cls, "--optimizer", OPTIMIZER_OF_CLASS)
    legacy = bool(config.get("is_legacy_optimizer")) or "decay" in config
    if legacy and cls not in LEGACY_SAME:
        _refuse(where, "Keras 2's legacy %s (its update differs from Keras' %s)" % (cls, cls),
                "--optimizer")
    if cls == "Nadam" and str(keras_version or "").startswith("2"):
        _refuse(where, "Keras 2's Nadam (in a compiled fit, tf-keras multiplies its momentum "
                "schedule's product once per variable, not once per step: an update no other "
                "Nadam makes)", "--optimizer keras-nadam (Keras 3's Nadam)")
    for key, fine in UNSUPPORTED_UNLESS.items():
        if config.get(key) not in fine:
            _refuse(where, "%s(%s=%s)" % (cls, key, config[key]), "--optimizer")
    name = OPTIMIZER_OF_CLASS[cls]
    taken = {keras for _, _, keras in FAMILY[name] + COMMON_FLAGS}
    stray = sorted(k for k in config if k not in taken and k not in NOT_SETTINGS and
                   k not in UNSUPPORTED_UNLESS and config[k] not in (None, False))
    if stray:
        _refuse(where, "%s's argument %s" % (cls, stray[0]), "--optimizer")
    settings = {SETTING_OF_KERAS[k]: config.get(k, KERAS_DEFAULTS[name][k]) for k in taken}
    lr, schedule = _learning_rate(config, where, name)
    shown = ", ".join("%s=%s" % (k, schedules._short(config.get(k, KERAS_DEFAULTS[name][k])))
                      for k in sorted(taken) if config.get(k) not in (None, False))
    rate = schedules.describe(schedule) if schedule else "%.6g" % lr
    return name, lr, settings, schedule, "%s(learning_rate=%s%s)" % (
        cls, rate, ", " + shown if shown else "")


def _learning_rate(config, where, name):
    """``(lr, schedule)``: Keras 2's legacy time-based ``decay`` is
    ``InverseTimeDecay(lr, 1, decay)``, as its optimizers computed it."""
    rate = config.get("learning_rate", config.get("lr", KERAS_DEFAULTS[name]["learning_rate"]))
    decay = config.get("decay") or 0.0
    if isinstance(rate, dict):
        if decay:
            _refuse(where, "a learning-rate schedule with Keras 2's decay", "--lr-schedule")
        schedule = schedules.checked(rate, where)
        return schedules.peak(schedule), schedule
    rate = float(rate)
    if decay:
        return rate, {"class_name": "InverseTimeDecay", "config": {
            "initial_learning_rate": rate, "decay_steps": 1, "decay_rate": float(decay),
            "staircase": False}}
    return rate, None


def _loss(entry, weights, where, head_output, binary):
    """The file's ``Loss`` (``None`` when it names none)."""
    if entry is None:
        return None
    if weights not in (None, 1, 1.0, [1], [1.0]):
        _refuse(where, "loss_weights %s" % (weights,), "--loss")
    if isinstance(entry, (list, dict)) and not (isinstance(entry, dict) and
                                                 "class_name" in entry):
        _refuse(where, "a loss per output", "--loss")
    config = {}
    if isinstance(entry, dict):
        cls, config = entry["class_name"], entry.get("config") or {}
        if cls == "function" and isinstance(config, str):       # Keras 3: loss=a function
            cls, config = LOSS_NAMES.get(config, config), {}
    else:
        cls = LOSS_NAMES.get(str(entry), str(entry))
    supported = ("BinaryCrossentropy",) if binary else CATEGORICAL
    if cls not in supported:
        what = "the loss %s" % cls
        if cls in CATEGORICAL + ("BinaryCrossentropy",):
            what += " on a head of %s" % ("one unit (a binary classifier)" if binary else
                                          "one unit per class (a single-label classifier)")
        _refuse(where, what, "--loss", supported)
    stray = sorted(k for k in config if k not in LOSS_KEYS)
    if stray:
        _refuse(where, "%s's argument %s" % (cls, stray[0]), "--loss")
    if config.get("reduction") not in REDUCTIONS:
        _refuse(where, "%s(reduction=%s)" % (cls, config["reduction"]), "--loss")
    if config.get("axis", -1) not in (-1, None) or config.get("ignore_class") is not None:
        _refuse(where, "%s with axis or ignore_class" % cls, "--loss")
    from_logits = bool(config.get("from_logits", False))
    if head_output in ("logits", "probabilities", "scores") and \
            from_logits != (head_output == "logits"):
        _refuse(where, "%s(from_logits=%s) on a model whose output is %s (Keras would train "
                "on them as %s)" % (cls, from_logits, SCORES[head_output],
                                    "logits" if from_logits else "probabilities"), "--loss")
    return Loss(cls, float(config.get("label_smoothing") or 0.0))


SCORES = {"logits": "logits", "probabilities": "probabilities", "scores": "sigmoid scores"}
