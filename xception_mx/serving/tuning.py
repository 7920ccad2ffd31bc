"""``auto`` by measurement: the fast path's channel padding and oneDNN ISA cap for a checkpoint,
chosen by timing each candidate on this machine at first use, and cached.

The rules by CPU vendor (``model.padding.padding_helps_here``, ``cpu.isa_cap_helps_here``)
were each measured on one machine and were wrong on the next (an AMD EPYC of family 26 ran
the rule's pick at 0.62x the padded, uncapped network).  So ``auto`` measures: each candidate
runs in a subprocess of its own (oneDNN reads its ISA cap once per process) on random input
of the checkpoint's shape, at the batch size it will run at; the fastest in images/s wins.
The result is cached per machine (CPU model, flags, cores, MXNet) and checkpoint shape
(network, input, precision, batch size) in ``~/.cache/xception-mx/auto.json``
(``XCEPTION_MX_AUTO_CACHE``: another file), and later runs reuse it.

Candidates: padding off and on (not for an optimized copy, which is as it was written, nor
where ``--channel-padding`` says), and the ISA caps a precision may take: fp32 ``all``, and
where the CPU has AVX-512 and the process runs one precision (``cpu.one_precision_process``)
``avx512_mic`` and ``avx2``; int8 and bf16 ``all``, and ``amx`` where the CPU has it
(``--onednn-isa`` fixes it).  ``XCEPTION_MX_AUTO=rules`` keeps the vendor rules, with no
measurement (the test suite's default: measuring in every test would cost minutes).  MXNet's
engine is not a candidate: it is set before MXNet loads, before the checkpoint is known
(``_threads.configure_engine``).
"""
import collections
import hashlib
import json
import os
import subprocess
import sys
import time

import mxnet as mx

from xception_mx.atomic import write_text
from xception_mx.cpu import (AMX_FLAGS, ISA_ENV, PROCESS, auto_mode, cpu_fields, has_amx,
                             has_avx512, why_no_amx)
from xception_mx.faults import injected
from xception_mx.progress import progress

CACHE_ENV = "XCEPTION_MX_AUTO_CACHE"
MIN_TURNS, SECONDS = 4, 2.0        # each padding timed in turns, this long at least
Choice = collections.namedtuple("Choice", "padded isa")


def cache_path(environ=os.environ):
    return environ.get(CACHE_ENV) or os.path.join(
        environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xception-mx",
        "auto.json")


def machine_key(fields=None):
    """This machine as the cache knows it: CPU model, a digest of its flags, the cores this
    process may use, MXNet's version."""
    fields = cpu_fields() if fields is None else fields
    flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:12]
    return "%s | flags %s | %d cores | mxnet %s" % (
        fields.get("model name", "unknown CPU"), flags, len(os.sched_getaffinity(0)),
        mx.__version__)


def shape_key(prefix, meta, precision, batch_size):
    """The checkpoint as the cache knows it: a digest of its network, input, precision,
    batch size (its weights do not change the speed)."""
    with open(prefix + "-symbol.json", "rb") as f:
        network = hashlib.sha256(f.read()).hexdigest()[:12]
    user_cap = os.environ.get(ISA_ENV)
    return "network %s | input %dx%dx%d | %s | batch %d%s" % (
        network, meta.channels, *meta.input_size(), precision, batch_size,
        " | %s=%s" % (ISA_ENV, user_cap) if user_cap else "")


def candidates(meta, precision, channel_padding="auto", onednn_isa="auto", fields=None,
               one_precision=None):
    """The ``Choice``s ``auto`` measures (the flags given fix their part)."""
    fields = cpu_fields() if fields is None else fields
    one_precision = PROCESS["one_precision"] if one_precision is None else one_precision
    if meta.is_serving_copy:
        paddings = [meta.padded_convolutions > 0]
    elif channel_padding != "auto":
        paddings = [channel_padding in ("on", True)]
    else:
        paddings = [False, True]
    if onednn_isa != "auto":
        isas = [onednn_isa]
    elif os.environ.get(ISA_ENV):
        isas = ["auto"]                   # the user's DNNL_MAX_CPU_ISA, kept by cap_isa
    elif precision == "fp32":
        isas = ["all"] + (["avx512_mic", "avx2"] if has_avx512(fields) and one_precision
                          else [])
    else:
        isas = ["all"] + (["amx"] if precision in AMX_FLAGS and has_amx(fields, precision)
                          and not why_no_amx(precision) else [])
    return [Choice(p, i) for i in isas for p in paddings]


def read_cache(path):
    """The cache file's ``{machine: {shape: {"rates": {...}, "pick": ...}}}``; ``{}`` where
    it is missing or not that (a damaged cache is measured again and rewritten)."""
    try:
        with open(path) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        return {}
    def good(entry):
        rates = entry.get("rates") if isinstance(entry, dict) else None
        return isinstance(rates, dict) and all(
            isinstance(r, (int, float)) and not isinstance(r, bool) for r in rates.values())
    return cache if isinstance(cache, dict) and all(
        isinstance(shapes, dict) and all(map(good, shapes.values()))
        for shapes in cache.values()) else {}


def measured(prefix, epoch, precision, batch_size, choices, log):
    """``{choice: images/s}``: one subprocess per ISA cap, timing its paddings in turns
    (``XCEPTION_MX_FAULT=auto-rates=PADDED/ISA:RATE+...``: a test's rates instead, such as
    ``1/avx2:20``)."""
    fake = injected("auto-rates")
    if fake is not None:
        rates = dict(item.split(":") for item in fake.split("+"))
        return {c: float(rates.get("%d/%s" % c, 0.0)) for c in choices}
    rates = {}
    isas = sorted({c.isa for c in choices}, key=[c.isa for c in choices].index)
    for isa in progress(isas, desc="auto: measuring", unit="ISA cap"):
        paddings = [c.padded for c in choices if c.isa == isa]
        argv = [sys.executable, "-m", "xception_mx.serving.tuning", prefix, str(epoch),
                precision, isa, str(batch_size)] + [str(int(p)) for p in paddings]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
            found = [float(r) for r in out.stdout.split()[-len(paddings):]] \
                if out.returncode == 0 else []
            why = out.stderr.strip() or "no output"
        except (subprocess.TimeoutExpired, ValueError) as exc:
            found, why = [], str(exc)
        if len(found) != len(paddings):
            log("auto: ISA %s could not run here (%s)" % (
                isa, " ".join(why.splitlines()[-2:])[-300:]))
            found = [0.0] * len(paddings)
        rates.update({Choice(p, isa): r for p, r in zip(paddings, found)})
    return rates


def describe(choice):
    return "padding %s, ISA %s" % ("on" if choice.padded else "off", choice.isa)


def tuned_choice(prefix, epoch, meta, precision, batch_size, channel_padding="auto",
                 onednn_isa="auto", log=None):
    """The measured ``Choice`` for this checkpoint here (cached), or ``None`` where the
    rules stand: ``XCEPTION_MX_AUTO=rules``, or nothing left to choose."""
    log = log or (lambda line: print(line, file=sys.stderr))
    choices = candidates(meta, precision, channel_padding, onednn_isa)
    if auto_mode() == "rules" or len(choices) < 2:
        return None
    path, machine = cache_path(), machine_key()
    key = shape_key(prefix, meta, precision, batch_size)
    cache = read_cache(path)
    entry = cache.get(machine, {}).get(key)
    known = {describe(c): c for c in choices}
    if entry and set(known) <= set(entry["rates"]):
        best = max(known, key=lambda name: entry["rates"][name])
        return known[best]
    log("auto: measuring %d ways to run %s at %s, batch %d, on this machine (once; kept in "
        "%s)" % (len(choices), os.path.basename(prefix), precision, batch_size, path))
    started = time.perf_counter()
    rates = measured(prefix, epoch, precision, batch_size, choices, log)
    best = max(choices, key=lambda c: rates[c])
    if rates[best] <= 0:
        log("auto: no candidate ran; the rules choose")
        return None
    old = dict(entry["rates"]) if entry else {}
    old.update({describe(c): rates[c] for c in choices})
    cache.setdefault(machine, {})[key] = {"rates": old, "pick": describe(best)}
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_text(path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    except OSError as exc:                # measured again next time: said, not fatal
        log("auto: cannot keep the measurement in %s (%s)" % (path, exc.strerror or exc))
    log("auto: %s, measured in %.0f s (%s)" % (
        describe(best), time.perf_counter() - started,
        ", ".join("%s %.1f images/s" % (describe(c), rates[c]) for c in choices)))
    return best


def _measure(argv):
    """In a subprocess under one ISA cap: the images/s of the checkpoint's fast network at
    each padding, timed in turns until ``SECONDS`` pass (the best batch of each: the least
    disturbed by other work on the machine)."""
    import numpy as np

    from xception_mx.checkpoint.reading import read_meta
    from xception_mx.cpu import isa_capped
    from xception_mx.serving.fast import load_fast_network
    from xception_mx.serving.plan import Plan
    prefix, epoch, precision, isa, batch = argv[:5]
    paddings, batch, meta = [bool(int(p)) for p in argv[5:]], int(batch), read_meta(prefix)
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (batch, meta.channels) + tuple(
        meta.input_size())).astype(np.float32))
    with isa_capped(isa, precision, paddings[0]):
        nets = [load_fast_network(prefix, int(epoch), batch_size=batch,
                                  calibration=x.asnumpy(), plan=Plan(precision, p, isa))[0]
                for p in paddings]
        best = [float("inf")] * len(nets)
        start, turns = time.perf_counter(), 0
        while turns < MIN_TURNS or time.perf_counter() - start < SECONDS:
            for i, net in enumerate(nets):
                began = time.perf_counter()
                net(x)
                mx.nd.waitall()
                best[i] = min(best[i], time.perf_counter() - began) if turns else best[i]
            turns += 1                                      # the first turn warms up
    print(" ".join("%.3f" % (batch / t) for t in best))


if __name__ == "__main__":
    _measure(sys.argv[1:])
