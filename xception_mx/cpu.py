"""What this CPU is, and the cap on the instruction sets oneDNN may use.

oneDNN (inside MXNet 1.9.1) picks each primitive's kernel from the CPU's instruction sets, and
the kernels take different memory layouts.  On a CPU with AVX-512 it runs Xception's
depthwise convolutions on ``brdgmm_dw:avx512_core``, which takes NHWC, while the 1x1
convolutions around them produce channel-blocked layouts: MXNet reorders to NHWC and back,
58 reorders in one forward.  Capped at ``AVX512_MIC`` (the ``avx512_common`` kernels) or
``AVX2``, oneDNN runs the depthwise convolutions in the 1x1 kernels' own blocked layout and the
reorders fall to 1 (BENCHMARKS.md section 2b).

The cap is oneDNN's ``DNNL_MAX_CPU_ISA``, read once per process, when oneDNN makes its first
primitive: it can be set after ``import mxnet`` but not after the first computation, and it
holds for the whole process.  It takes away the VNNI and BF16 kernels that int8 and bf16
need, so it is for fp32 only.

AMX (Intel's matrix units, Sapphire Rapids and later) is the other way round: oneDNN 2.4 has
AMX kernels for int8 and bf16 but leaves them out unless ``DNNL_MAX_CPU_ISA`` raises the
ceiling to ``AVX512_CORE_AMX`` (they were a preview then), and it never asks Linux (5.16 and
later) for the AMX tile state, so with that setting alone the process dies of SIGILL at the
first AMX instruction.  ``request_amx`` asks for it, and ``import xception_mx`` calls it
(elsewhere Linux says no, harmlessly); ``auto`` raises the ceiling for int8 and bf16 where the
CPU has AMX (faster for both: BENCHMARKS.md section 3).
"""
import contextlib
import ctypes
import functools
import os
import platform
import sys
import tempfile

from xception_mx.errors import InputError, make_sure

ISA_ENV = "DNNL_MAX_CPU_ISA"
# A cpuinfo file read instead of /proc/cpuinfo: the CPU the defaults (padding, the ISA cap, bf16
# refusal) are chosen for.  For seeing this toolkit take another CPU's default paths (the test
# suite with tests/data/cpuinfo-intel-xeon); oneDNN's kernels stay this CPU's.
CPUINFO_ENV = "XCEPTION_MX_CPUINFO"
ISA_CHOICES = ("auto", "all", "amx", "avx512_mic", "avx2")
AMX_ISA = "AVX512_CORE_AMX"
# the CPU flags of AMX's tile unit and of the kernels each reduced precision runs on
AMX_FLAGS = {"int8": ("amx_tile", "amx_int8"), "bf16": ("amx_tile", "amx_bf16")}
# Linux's arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) on x86-64: the per-process
# permission to use AMX's tile data (kernel 5.16 and later; older kernels refuse the call)
SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18
# oneDNN 2.4 runs bf16 on its avx512_core kernels and above (measured: capped at AVX512_MIC,
# a bf16 convolution fails with "could not create a primitive descriptor iterator").
BF16_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq")
BELOW_AVX512_CORE = ("SSE41", "AVX", "AVX2", "AVX512_MIC", "AVX512_MIC_4OPS")
# This process's oneDNN.  ``cap``: what oneDNN read when the process's first network ran
# (``isa_capped``), which it keeps for the process.  ``one_precision``: a command that runs
# networks of one precision only says so (``one_precision_process``); elsewhere (the library,
# a comparison of precisions) a bf16 network may come after an fp32 one, so ``auto`` never
# takes away the kernels bf16 needs.
UNREAD = "unread"
PROCESS = {"cap": UNREAD, "one_precision": False}
# How ``auto`` chooses the fast path's padding and cap: by measuring (``serving.tuning``) or
# by the rules below and in ``model.padding``
AUTO_ENV = "XCEPTION_MX_AUTO"
AUTO_MODES = ("measure", "rules")


def auto_mode(environ=os.environ):
    """``measure`` (the default) or ``rules``, as ``XCEPTION_MX_AUTO`` says."""
    value = environ.get(AUTO_ENV, AUTO_MODES[0])
    make_sure(value in AUTO_MODES, "%s=%s: expected one of %s", AUTO_ENV, value,
              ", ".join(AUTO_MODES))
    return value


def cpu_fields(cpuinfo=None):
    """The first processor's fields of ``cpuinfo`` (default: the file ``XCEPTION_MX_CPUINFO``
    names, else ``/proc/cpuinfo``; ``{}`` where it cannot be read)."""
    named = None if cpuinfo else os.environ.get(CPUINFO_ENV)
    try:
        with open(cpuinfo or named or "/proc/cpuinfo") as f:
            text = f.read()
    except OSError as e:
        if named:
            raise InputError("%s=%s: cannot read it (%s); unset it to use this CPU's "
                             "/proc/cpuinfo" % (CPUINFO_ENV, named, e.strerror))
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            break                              # the first processor is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def has_avx512(fields):
    return "avx512f" in fields.get("flags", "").split()


def is_intel(fields):
    return fields.get("vendor_id") == "GenuineIntel"


def has_amx(fields, precision):
    """The CPU has AMX kernels' instructions for ``precision`` (int8 or bf16)."""
    flags = fields.get("flags", "").split()
    return precision in AMX_FLAGS and all(flag in flags for flag in AMX_FLAGS[precision])


@functools.lru_cache(maxsize=None)
def request_amx():
    """Ask Linux for this process's permission to use AMX tile data, once; None when it is
    granted, else why not.  Harmless where nothing uses AMX; it must come before oneDNN's
    first AMX instruction, which is otherwise fatal (SIGILL)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return "AMX is for Linux on x86-64"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0:
        return "Linux refused the AMX tile permission (%s)" % os.strerror(ctypes.get_errno())
    return None


def why_no_amx(precision, cpuinfo=None, refused=None):
    """Why oneDNN cannot run ``precision`` on AMX here (None: it can); ``refused``: what
    ``request_amx`` said (default: ask)."""
    if precision not in AMX_FLAGS:
        return "oneDNN has AMX kernels for int8 and bf16 only"
    if not has_amx(cpu_fields(cpuinfo), precision):
        return "this CPU lacks %s" % " and ".join(AMX_FLAGS[precision])
    return refused if refused is not None else request_amx()


def why_no_bf16(cpuinfo=None, environ=os.environ):
    """Why oneDNN cannot run bf16 here (None: it can, or the CPU is unknown)."""
    cap = environ.get(ISA_ENV, "").upper()
    if cap in BELOW_AVX512_CORE:
        return "%s=%s caps them away" % (ISA_ENV, cap)
    fields = cpu_fields(cpuinfo)
    missing = [flag for flag in BF16_FLAGS if flag not in fields.get("flags", "").split()]
    if fields and missing:
        return "this CPU lacks %s" % ", ".join(missing)
    return None


def one_precision_process():
    """Declare that this process runs networks of one precision only (``xception-predict``,
    ``xception-evaluate`` without ``--compare``): ``auto`` may then cap fp32 below the
    kernels bf16 needs."""
    PROCESS["one_precision"] = True


def isa_cap_helps_here(precision, padded, cpuinfo=None, amx_refused=None, one_precision=None):
    """The cap that makes this CPU's fused ``precision`` forward faster, or None.

    int8 and bf16 where the CPU has AMX for them and Linux grants it: ``AVX512_CORE_AMX``,
    which raises oneDNN 2.4's ceiling to its AMX kernels (``amx_refused``: see
    ``why_no_amx``).

    fp32 on an AMD CPU with AVX-512, where the cap removes the depthwise convolutions'
    layout reorders: ``AVX512_MIC`` for a network padded to 16-channel blocks (its kernels
    run 16 channels at a time), ``AVX2`` for 728 channels.  Not on Intel: there oneDNN's
    ``brgconv`` kernels, which the cap removes, are the fast path for the padded network.
    The caps never apply to int8 or bf16, and apply to fp32 only in a process that runs one
    precision (``one_precision``; default: as declared by ``one_precision_process``): the cap
    holds for the process, and a bf16 network cannot run under it.  The measurements behind
    each rule: BENCHMARKS.md sections 2, 2b and 3."""
    if precision in AMX_FLAGS:
        return None if why_no_amx(precision, cpuinfo, amx_refused) else AMX_ISA
    fields = cpu_fields(cpuinfo)
    if one_precision is None:
        one_precision = PROCESS["one_precision"]
    if precision != "fp32" or not one_precision or not has_avx512(fields) or is_intel(fields):
        return None
    return "AVX512_MIC" if padded else "AVX2"


def cap_isa(choice, precision, padded, environ=os.environ, cpuinfo=None, amx_refused=None,
            tuned=None):
    """Set oneDNN's ISA cap for this process, before its first computation; returns the cap
    in force (None: every instruction set the CPU has, AMX aside).

    ``choice``: ``auto`` (``tuned``, the choice ``serving.tuning`` measured fastest here, or
    else where the rules say it is faster, see ``isa_cap_helps_here``; a ``DNNL_MAX_CPU_ISA``
    the user set is kept), ``all`` (no cap), ``amx`` (int8 and bf16: raise the ceiling to
    oneDNN's AMX kernels), ``avx512_mic`` or ``avx2`` (fp32 only)."""
    make_sure(choice in ISA_CHOICES, "oneDNN ISA must be one of %s, got %r",
              ", ".join(ISA_CHOICES), choice)
    if choice == "auto":
        if environ.get(ISA_ENV):
            user = environ[ISA_ENV]
            fatal = (user.upper() == AMX_ISA and has_amx(cpu_fields(cpuinfo), precision)
                     and why_no_amx(precision, cpuinfo, amx_refused))
            make_sure(not fatal, "%s=%s asks for oneDNN's AMX kernels, but %s: unset it",
                      ISA_ENV, user, fatal)
            return user
        if tuned is not None:
            return cap_isa(tuned, precision, padded, environ, cpuinfo, amx_refused)
        cap = isa_cap_helps_here(precision, padded, cpuinfo, amx_refused)
        if cap:
            environ[ISA_ENV] = cap
        return cap
    if choice == "amx":
        no_amx = why_no_amx(precision, cpuinfo, amx_refused)
        make_sure(not no_amx, "--onednn-isa amx: %s", no_amx)
        environ[ISA_ENV] = AMX_ISA
        return AMX_ISA
    make_sure(choice == "all" or precision == "fp32", "oneDNN ISA cap %s (--onednn-isa) is "
              "for fp32 networks: %s needs the VNNI or BF16 kernels it takes away", choice,
              precision)
    cap = None if choice == "all" else choice.upper()
    environ[ISA_ENV] = cap or "ALL"
    return cap


@contextlib.contextmanager
def isa_capped(choice, precision, padded, environ=os.environ, cpuinfo=None, tuned=None):
    """``cap_isa`` for the block (``tuned``: ``auto``'s measured choice), which must hold the
    process's first computation; the environment is given back after it.  oneDNN has read the
    cap by then and keeps it for the whole process, while the processes this one starts later
    do not inherit it.  A later
    block runs under that first cap (recorded in ``PROCESS``): bf16 is refused in one line
    where the cap took its kernels away, and so is an explicit ``choice`` of another cap."""
    read = PROCESS["cap"] if environ is os.environ else UNREAD
    if read != UNREAD:
        make_sure(precision != "bf16" or read.upper() not in BELOW_AVX512_CORE,
                  "bf16 cannot run in this process: oneDNN took the cap %s=%s when the "
                  "process's first network ran and keeps it (bf16 needs its AVX-512 kernels); "
                  "run bf16 in a new process, or give the first network onednn_isa='all' "
                  "(--onednn-isa all)", ISA_ENV, read)
        if choice != "auto":
            asked = cap_isa(choice, precision, padded, {}, cpuinfo) or "ALL"   # checked too
            make_sure(asked.upper() == read.upper(), "oneDNN ISA %s cannot apply: oneDNN "
                      "took the cap %s=%s when the process's first network ran and keeps it; "
                      "run this network in a new process", choice, ISA_ENV, read)
        yield None if read == "ALL" else read
        return
    before = environ.get(ISA_ENV)
    try:
        cap = cap_isa(choice, precision, padded, environ, cpuinfo, tuned=tuned)
        if environ is os.environ:
            PROCESS["cap"] = environ.get(ISA_ENV) or "ALL"
        yield cap
    finally:
        if before is None:
            environ.pop(ISA_ENV, None)
        else:
            environ[ISA_ENV] = before


def executed_primitives(run):
    """``(run()'s result, [fields of each primitive oneDNN executed meanwhile])``, from
    ``MKLDNN_VERBOSE=1`` (set before the process's first computation), whose lines oneDNN
    prints from C to file descriptor 1: ``fields[3]`` is the primitive kind, ``fields[4]`` its
    implementation, ``fields[-1]`` its milliseconds."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile("w+") as log:
        os.dup2(log.fileno(), 1)
        try:
            result = run()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = [line.split(",") for line in log.read().splitlines()]
    return result, [fields for fields in lines if len(fields) > 5 and fields[1] == "exec"]
