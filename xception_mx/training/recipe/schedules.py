"""Keras' learning-rate schedules, computed as Keras computes them: from the optimizer's step
count before the update (0 for the first step), in float32, with the formulas of
``keras/src/optimizers/schedules/learning_rate_schedule.py`` (tf-keras 2.17's are the same).

A schedule is the JSON Keras saves, ``{"class_name": ..., "config": {...}}``; ``checked``
keeps the arguments each class takes and refuses anything else in one line."""
import math

import numpy as np

from xception_mx.errors import InputError

F32 = np.float32
# class -> (its arguments and their defaults (None: required), those that are learning rates)
SCHEDULES = {
    "ExponentialDecay": ({"initial_learning_rate": None, "decay_steps": None,
                          "decay_rate": None, "staircase": False},
                         ("initial_learning_rate",)),
    "PiecewiseConstantDecay": ({"boundaries": None, "values": None}, ("values",)),
    "CosineDecay": ({"initial_learning_rate": None, "decay_steps": None, "alpha": 0.0,
                     "warmup_target": None, "warmup_steps": 0},
                    ("initial_learning_rate", "warmup_target")),
    "InverseTimeDecay": ({"initial_learning_rate": None, "decay_steps": None,
                          "decay_rate": None, "staircase": False},
                         ("initial_learning_rate",)),
    "PolynomialDecay": ({"initial_learning_rate": None, "decay_steps": None,
                         "end_learning_rate": 0.0001, "power": 1.0, "cycle": False},
                        ("initial_learning_rate", "end_learning_rate")),
}
IGNORED = ("name",)


def checked(schedule, where):
    """``{"class_name", "config"}`` of a schedule Keras saved, its config reduced to the
    arguments of its class with their defaults filled in; another class, a missing argument
    or an unknown one is refused, naming ``where`` (the file)."""
    cls = schedule.get("class_name")
    if cls not in SCHEDULES:
        raise InputError("%s: the learning-rate schedule %s is not supported (supported: %s); "
                         "--lr-schedule or --recipe default replaces it"
                         % (where, cls, ", ".join(SCHEDULES)))
    arguments, _ = SCHEDULES[cls]
    given = dict(schedule.get("config") or {})
    unknown = sorted(k for k in given if k not in arguments and k not in IGNORED and
                     given[k] is not None)
    if unknown:
        raise InputError("%s: %s's argument %s is not supported; --lr-schedule replaces the "
                         "schedule" % (where, cls, unknown[0]))
    config = {}
    for key, default in arguments.items():
        value = given.get(key, default)
        if value is None and default is None and key != "warmup_target":
            raise InputError("%s: %s without its %s" % (where, cls, key))
        config[key] = value
    return {"class_name": cls, "config": config}


def peak(schedule):
    """The largest learning rate the schedule gives."""
    config = schedule["config"]
    values = []
    for key in SCHEDULES[schedule["class_name"]][1]:
        value = config.get(key)
        values += value if isinstance(value, list) else [] if value is None else [value]
    return max(values)


def rescaled(schedule, lr):
    """The schedule with every learning rate in it scaled so that its peak is ``lr``
    (``--lr`` over a file's schedule: the same shape at another height)."""
    top = peak(schedule)
    if top <= 0:
        raise InputError("--lr %g: the file's %s never exceeds 0, so it has no peak to scale; "
                         "--lr-schedule replaces it" % (lr, schedule["class_name"]))
    factor = lr / top
    config = dict(schedule["config"])
    for key in SCHEDULES[schedule["class_name"]][1]:
        value = config.get(key)
        if isinstance(value, list):
            config[key] = [v * factor for v in value]
        elif value is not None:
            config[key] = value * factor
    return {"class_name": schedule["class_name"], "config": config}


def learning_rate_at(schedule, step):
    """The learning rate of ``schedule`` at optimizer step ``step`` (from 0), in float32."""
    config = schedule["config"]
    return float(_FORMULAS[schedule["class_name"]](config, F32(step)))


def _exponential(c, step):
    p = step / F32(c["decay_steps"])
    if c["staircase"]:
        p = np.floor(p)
    return F32(c["initial_learning_rate"]) * np.power(F32(c["decay_rate"]), p)


def _inverse_time(c, step):
    p = step / F32(c["decay_steps"])
    if c["staircase"]:
        p = np.floor(p)
    return F32(c["initial_learning_rate"]) / (F32(1) + F32(c["decay_rate"]) * p)


def _piecewise(c, step):
    boundaries, values = c["boundaries"], [F32(v) for v in c["values"]]
    if step <= boundaries[0]:
        return values[0]
    for low, high, value in zip(boundaries[:-1], boundaries[1:], values[1:-1]):
        if low < step <= high:
            return value
    return values[-1]


def _polynomial(c, step):
    initial, end = F32(c["initial_learning_rate"]), F32(c["end_learning_rate"])
    decay_steps = F32(c["decay_steps"])
    if c["cycle"]:
        decay_steps = decay_steps * (F32(1) if step == 0 else np.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    p = step / decay_steps
    return (initial - end) * np.power(F32(1) - p, F32(c["power"])) + end


def _cosine(c, step):
    initial, decay_steps = F32(c["initial_learning_rate"]), F32(c["decay_steps"])

    def decay(step, start):
        fraction = step / decay_steps
        cosine = F32(0.5) * (F32(1) + np.cos(F32(math.pi) * fraction))
        return start * ((F32(1) - F32(c["alpha"])) * cosine + F32(c["alpha"]))
    if c["warmup_target"] is None:
        return decay(min(step, decay_steps), initial)
    target, warmup = F32(c["warmup_target"]), F32(c["warmup_steps"])
    step = min(step, decay_steps + warmup)
    if step < warmup:
        return (target - initial) * (step / warmup) + initial
    return decay(step - warmup, target)


_FORMULAS = {"ExponentialDecay": _exponential, "InverseTimeDecay": _inverse_time,
             "PiecewiseConstantDecay": _piecewise, "PolynomialDecay": _polynomial,
             "CosineDecay": _cosine}


def describe(schedule):
    """``ExponentialDecay(initial_learning_rate=0.001, decay_steps=100, ...)``."""
    return "%s(%s)" % (schedule["class_name"], ", ".join(
        "%s=%s" % (k, _short(v)) for k, v in schedule["config"].items()))


def _short(value):
    if isinstance(value, float):
        return "%.6g" % value
    if isinstance(value, list):
        return "[%s]" % ", ".join(_short(v) for v in value)
    return str(value)
