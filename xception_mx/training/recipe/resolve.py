"""A run's recipe, chosen once from three sources, each part from the first that sets it:
xception-finetune's flags, then the Keras file's recipe (``file_recipe``; not with
``--recipe default``), then this toolkit's defaults (``nag`` at 0.01, cosine decay, softmax
cross-entropy).  The parts: the optimizer with its settings, the learning rate and its
schedule, the loss.  ``--optimizer`` replaces the file's optimizer and its settings; a setting
flag (``--momentum``...) replaces that setting; ``--lr`` scales the file's schedule to that
peak; ``--lr-schedule`` replaces the schedule; ``--loss`` and ``--label-smoothing`` the loss."""
from xception_mx.errors import InputError, make_sure

from . import schedules
from .losses import BINARY_LOSS, DEFAULT_LOSS, LOSS_NAMES, Loss, describe as describe_loss
from .optimizers import SETTINGS, resolve_optimizer

RECIPES = ("file", "default")
TOOLKIT_OPTIMIZER, TOOLKIT_LR, TOOLKIT_SCHEDULE = "nag", 0.01, "cosine"
LR_SCHEDULES = ("cosine", "step", "constant")       # --lr-schedule; "keras": the file's
OVERRIDING_FLAGS = (("--optimizer", "optimizer"), ("--lr", "lr"),
                    ("--lr-schedule", "lr_schedule"), ("--loss", "loss"),
                    ("--label-smoothing", "label_smoothing")) + tuple(
    ("--" + key.replace("_", "-"), key) for key in SETTINGS)
TRAINING_LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy",
                   "binary_crossentropy")


def resolve_recipe(config, recipe, binary=False):
    """Fill ``config``'s ``optimizer``, its settings, ``lr``, ``lr_schedule``,
    ``keras_schedule`` and ``loss`` (flags as given, ``None`` where unset) from the flags,
    ``recipe`` (a ``FileRecipe`` or ``None``) and the defaults (``binary``: of a head with one
    unit, binary cross-entropy); returns the line that says what the run trains with."""
    overridden = [flag for flag, key in OVERRIDING_FLAGS if config.get(key) is not None]
    use = recipe if config.get("recipe", "file") == "file" else None
    from_file = use is not None and use.optimizer is not None
    name = config["optimizer"] or (use.optimizer if from_file else TOOLKIT_OPTIMIZER)
    settings = dict(use.settings) if from_file and use.optimizer == name else {}
    settings.update({k: config[k] for k in SETTINGS if config.get(k) is not None})
    lr = config["lr"] if config["lr"] is not None else (use.lr if from_file else TOOLKIT_LR)
    schedule = None
    if config["lr_schedule"]:
        kind = config["lr_schedule"]
    elif from_file:
        kind, schedule = ("keras", use.schedule) if use.schedule else ("constant", None)
        if schedule and config["lr"] is not None:
            schedule = schedules.rescaled(schedule, config["lr"])
    else:
        kind = TOOLKIT_SCHEDULE
    make_sure(not (kind == "keras" and config.get("warmup_epochs")), "--warmup-epochs: the "
              "file's schedule %s has its own; --lr-schedule replaces it",
              schedule and schedule["class_name"])
    config.update(resolve_optimizer(name, lr, settings).settings, optimizer=name, lr=lr,
                  lr_schedule=kind, keras_schedule=schedule)
    loss = _loss(config, use.loss if use is not None else None, binary)
    config["loss"] = loss._asdict()
    return _line(config, recipe, use, loss, overridden)


def _loss(config, file_loss, binary):
    smoothing = config.get("label_smoothing")
    if config.get("loss"):
        loss = Loss(LOSS_NAMES[config["loss"]], 0.0)
        make_sure((loss == BINARY_LOSS) == binary, "--loss %s: the model's head has %s",
                  config["loss"], "one unit (a binary classifier: binary_crossentropy)"
                  if binary else "a unit per class (categorical_crossentropy or "
                  "sparse_categorical_crossentropy)")
    else:
        loss = file_loss or (BINARY_LOSS if binary else DEFAULT_LOSS)
    if smoothing is not None:
        if not config.get("loss") and loss == DEFAULT_LOSS:
            loss = Loss("CategoricalCrossentropy", 0.0)
        if loss.class_name == "SparseCategoricalCrossentropy":
            raise InputError("--label-smoothing: Keras' %s has no label smoothing; use --loss "
                             "categorical_crossentropy" % loss.class_name)
        make_sure(0 <= smoothing < 1, "--label-smoothing must be in [0, 1), got %s", smoothing)
        loss = loss._replace(label_smoothing=float(smoothing))
    return loss


def _line(config, recipe, use, loss, overridden):
    """What the run trains with, and where it comes from, in one line."""
    rate = schedules.describe(config["keras_schedule"]) if config["keras_schedule"] else \
        "%g, %s" % (config["lr"], config["lr_schedule"])
    trained = "%s (lr %s), %s" % (config["optimizer"], rate, describe_loss(loss))
    if use is not None and overridden:
        return "training with the Keras file's recipe, %s, but for %s: %s" % (
            use.text, ", ".join(overridden), trained)
    if use is not None:
        return "training with the Keras file's recipe, %s (as %s)" % (use.text, trained)
    if recipe is not None:
        return "training with %s (--recipe default: the file's %s ignored)" % (
            trained, recipe.text)
    return "training with %s (no recipe from a Keras file)" % trained


def run_loss(config):
    """The run's ``Loss`` (a configuration recorded before losses were: the default)."""
    return Loss(**config["loss"]) if config.get("loss") else DEFAULT_LOSS
