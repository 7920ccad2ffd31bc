"""Keras' ``fit`` callbacks that users reach for, on the validation loss, with Keras 3's rules
(``keras/src/callbacks/early_stopping.py``, ``reduce_lr_on_plateau.py``): their state is a
JSON dict, saved with every epoch so that a resumed run decides as the whole run would.

- ``--early-stopping PATIENCE``: ``EarlyStopping(monitor="val_loss", patience=PATIENCE,
  restore_best_weights=True)``: an epoch improves on the best when its loss is lower; after
  ``PATIENCE`` epochs without, training stops, and the export is the best epoch's weights.
- ``--reduce-lr-on-plateau FACTOR,PATIENCE``: ``ReduceLROnPlateau(monitor="val_loss",
  factor=FACTOR, patience=PATIENCE)`` (``min_delta`` 1e-4): after ``PATIENCE`` epochs whose
  loss is not lower than the best by 1e-4, the learning rate is multiplied by ``FACTOR``
  (Keras stores it in float32)."""
import numpy as np

from xception_mx.errors import InputError, make_sure

PLATEAU_MIN_DELTA = 1e-4


def parse_plateau(text):
    """``[factor, patience]`` of ``--reduce-lr-on-plateau FACTOR,PATIENCE``."""
    try:
        factor, patience = text.split(",")
        factor, patience = float(factor), int(patience)
    except ValueError:
        raise InputError("--reduce-lr-on-plateau %s: expected FACTOR,PATIENCE, e.g. 0.5,2"
                         % text)
    make_sure(0 < factor < 1 and patience >= 1, "--reduce-lr-on-plateau %s: the factor must "
              "be in (0, 1) and the patience >= 1", text)
    return [factor, patience]


def check_callbacks(config, has_validation):
    """Refuse a callback that cannot act: both monitor the validation loss; the plateau
    sets a constant learning rate, as Keras' does."""
    for flag, key in (("--early-stopping", "early_stopping"),
                      ("--reduce-lr-on-plateau", "reduce_lr_on_plateau")):
        if config.get(key) is not None:
            make_sure(has_validation, "%s monitors the validation loss: give --val or "
                      "--val-split", flag)
    if config.get("early_stopping") is not None:
        make_sure(config["early_stopping"] >= 1, "--early-stopping must be >= 1, got %s",
                  config["early_stopping"])
    if config.get("reduce_lr_on_plateau") is not None:
        make_sure(config["lr_schedule"] == "constant", "--reduce-lr-on-plateau sets a constant "
                  "learning rate, as Keras' ReduceLROnPlateau does, and the run's schedule is "
                  "%s; add --lr-schedule constant", config["lr_schedule"])


def start_state():
    return {"stopping": {"best": None, "best_epoch": 0, "wait": 0},
            "plateau": {"best": None, "wait": 0, "lr": None}}


def early_stopping(state, patience, epoch, val_loss):
    """Keras' ``EarlyStopping.on_epoch_end``: whether to stop after ``epoch``."""
    state["wait"] += 1
    if state["best"] is None or val_loss < state["best"]:
        state.update(best=val_loss, best_epoch=epoch, wait=0)
        return False
    return state["wait"] >= patience and epoch > 0


def reduce_on_plateau(state, factor, patience, val_loss, lr):
    """Keras' ``ReduceLROnPlateau.on_epoch_end``: the learning rate from the next epoch on
    (``lr``: this epoch's)."""
    if state["best"] is None or val_loss + PLATEAU_MIN_DELTA < state["best"]:
        state.update(best=val_loss, wait=0)
        return lr
    state["wait"] += 1
    if state["wait"] >= patience and lr > 0:
        state.update(wait=0, lr=float(np.float32(float(np.float32(lr)) * factor)))
        return state["lr"]
    return lr
