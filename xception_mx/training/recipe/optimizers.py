"""The optimizer a run trains with, resolved once: its flags checked against the optimizer,
its unset settings given the optimizer's defaults (Keras' for Keras' optimizers, this
toolkit's for MXNet's), and the result one value, ``Optimizer``, that ``make_trainer`` turns
into a Gluon Trainer.  The update formulas of Keras' optimizers: ``keras_optimizers``."""
import collections

from xception_mx.errors import InputError

from .keras_optimizers import KERAS_DEFAULTS, KERAS_OPTIMIZERS, REGISTERED

MXNET_OPTIMIZERS = ("sgd", "nag", "adam")
OPTIMIZER_NAMES = MXNET_OPTIMIZERS + KERAS_OPTIMIZERS
MXNET_DEFAULTS = {"momentum": 0.9, "wd": 1e-4}
# xception-finetune's flags: (flag, setting, Keras' argument) per optimizer family
SGD_FLAGS = (("--momentum", "momentum", "momentum"), ("--nesterov", "nesterov", "nesterov"))
ADAM_FLAGS = (("--beta1", "beta1", "beta_1"), ("--beta2", "beta2", "beta_2"),
              ("--epsilon", "epsilon", "epsilon"))
RMSPROP_FLAGS = (("--rho", "rho", "rho"), ("--momentum", "momentum", "momentum"),
                 ("--epsilon", "epsilon", "epsilon"), ("--centered", "centered", "centered"))
COMMON_FLAGS = (("--weight-decay", "weight_decay", "weight_decay"),
                ("--clipnorm", "clipnorm", "clipnorm"),
                ("--global-clipnorm", "global_clipnorm", "global_clipnorm"),
                ("--clipvalue", "clipvalue", "clipvalue"))
CLIP_SETTINGS = ("clipnorm", "global_clipnorm", "clipvalue")
FAMILY = {"keras-sgd": SGD_FLAGS, "keras-adam": ADAM_FLAGS, "keras-adamw": ADAM_FLAGS,
          "keras-nadam": ADAM_FLAGS, "keras-rmsprop": RMSPROP_FLAGS}
KERAS_FLAGS = tuple(dict.fromkeys(SGD_FLAGS + ADAM_FLAGS + RMSPROP_FLAGS + COMMON_FLAGS))
SETTINGS = ("wd",) + tuple(key for _, key, _ in KERAS_FLAGS)
# Keras' argument name -> the setting's name here (beta_1 -> beta1 ...)
SETTING_OF_KERAS = {keras: key for _, key, keras in KERAS_FLAGS}
KERAS_NAMES = "keras-sgd, keras-adam, keras-adamw, keras-rmsprop, keras-nadam"

Optimizer = collections.namedtuple("Optimizer", "name lr settings")
Optimizer.__doc__ = """An optimizer as a run resolved it: ``name`` (MXNet's ``sgd``, ``nag``,
``adam``, or Keras' ``keras-sgd``, ``keras-adam``, ``keras-adamw``, ``keras-rmsprop``,
``keras-nadam``), the peak learning rate ``lr``, and ``settings``: each value the run's
configuration records for it (``momentum`` and coupled ``wd`` for MXNet's; the family's own
settings, decoupled ``weight_decay``, the clipping and ``wd`` 0 for Keras')."""


def _refuse(stray, text):
    if stray:
        raise InputError(text % stray[0])


def _keras_flags(name):
    return FAMILY[name] + COMMON_FLAGS


def resolve_optimizer(name, lr, given=None):
    """The ``Optimizer`` of ``name`` at ``lr`` with the settings ``given`` (``{setting:
    value or None}``, as xception-finetune's flags give them; unset ones take the
    optimizer's defaults); a flag the optimizer does not take is refused in one line."""
    given = {key: (given or {}).get(key) for key in SETTINGS}
    if name not in KERAS_OPTIMIZERS:
        _refuse([flag for flag, key, _ in KERAS_FLAGS if key != "momentum" and
                 given[key] not in (None, False)], "%%s applies to Keras' optimizers (%s), "
                "not to --optimizer %s" % (KERAS_NAMES, name))
        return Optimizer(name, lr, {key: default if given[key] is None else given[key]
                                    for key, default in MXNET_DEFAULTS.items()})
    _refuse(["--wd"] if given["wd"] else [], "%s is MXNet's coupled weight decay; Keras' "
            "optimizers take --weight-decay (decoupled), as Keras does")
    own = _keras_flags(name)
    own_flags = {flag for flag, _, _ in own}
    _refuse([flag for flag, key, _ in KERAS_FLAGS if flag not in own_flags and
             given[key] not in (None, False)], "%%s does not apply to --optimizer %s" % name)
    clipping = [flag for flag, key, _ in COMMON_FLAGS if key in CLIP_SETTINGS and given[key]]
    if len(clipping) > 1:
        raise InputError("%s and %s exclude each other: Keras clips by one of clipnorm, "
                         "global_clipnorm, clipvalue" % tuple(clipping[:2]))
    defaults = KERAS_DEFAULTS[name]
    settings = {key: defaults[keras] if given[key] is None else given[key]
                for _, key, keras in own}
    return Optimizer(name, lr, dict(settings, wd=0.0))


def keras_arguments(optimizer):
    """The Keras constructor arguments of a Keras optimizer (``None`` for MXNet's)."""
    if optimizer.name not in KERAS_OPTIMIZERS:
        return None
    return {keras: optimizer.settings[key] for _, key, keras in _keras_flags(optimizer.name)}


def trainer_arguments(optimizer):
    """``(MXNet optimizer name, options)`` for ``gluon.Trainer``."""
    if optimizer.name in KERAS_OPTIMIZERS:            # Keras' formulas and defaults
        options = dict(KERAS_DEFAULTS[optimizer.name], **keras_arguments(optimizer))
        options.pop("learning_rate")
        if options.get("weight_decay") is None:
            options.pop("weight_decay")
        return REGISTERED[optimizer.name], dict(options, learning_rate=optimizer.lr)
    options = {"learning_rate": optimizer.lr, "wd": optimizer.settings["wd"]}
    if optimizer.name in ("sgd", "nag"):
        options["momentum"] = optimizer.settings["momentum"]
    return optimizer.name, options


def run_optimizer(config):
    """The ``Optimizer`` of a run configuration, which records the flags as given and, once
    ``config_from_args`` resolved them, every setting (so resolving it again gives the same)."""
    return resolve_optimizer(config["optimizer"], config["lr"],
                             {key: config.get(key) for key in SETTINGS})
