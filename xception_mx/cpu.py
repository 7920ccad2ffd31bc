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
"""
import contextlib
import os
import sys
import tempfile

from xception_mx.errors import InputError, make_sure

ISA_ENV = "DNNL_MAX_CPU_ISA"
# A cpuinfo file read instead of /proc/cpuinfo: the CPU the defaults (padding, the ISA cap, bf16
# refusal) are chosen for.  For seeing this toolkit take another CPU's default paths (the test
# suite with tests/data/cpuinfo-intel-xeon); oneDNN's kernels stay this CPU's.
CPUINFO_ENV = "XCEPTION_MX_CPUINFO"
ISA_CHOICES = ("auto", "all", "avx512_mic", "avx2")
# oneDNN 2.4 runs bf16 on its avx512_core kernels and above (measured: capped at AVX512_MIC,
# a bf16 convolution fails with "could not create a primitive descriptor iterator").
BF16_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq")
BELOW_AVX512_CORE = ("SSE41", "AVX", "AVX2", "AVX512_MIC", "AVX512_MIC_4OPS")


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


def isa_cap_helps_here(precision, padded, cpuinfo=None):
    """The cap that makes this CPU's fused ``precision`` forward faster, or None.

    fp32 on an AMD CPU with AVX-512 (measured on an EPYC, BENCHMARKS.md sections 2 and 2b:
    the 58 depthwise reorders fall to 1): ``AVX512_MIC`` for a network padded to 16-channel
    blocks (its kernels run 16 channels at a time), ``AVX2`` for 728 channels.  Not on Intel:
    there oneDNN's ``brgconv`` kernels, which the cap removes, are the fast path for the
    padded network (measured on a Xeon: 1.05x Keras capped against 1.10x uncapped at batch 8,
    1.21x against 1.32x at batch 1).  Never for int8 or bf16."""
    fields = cpu_fields(cpuinfo)
    if precision != "fp32" or not has_avx512(fields) or is_intel(fields):
        return None
    return "AVX512_MIC" if padded else "AVX2"


def cap_isa(choice, precision, padded, environ=os.environ, cpuinfo=None):
    """Set oneDNN's ISA cap for this process, before its first computation; returns the cap
    in force (None: every instruction set the CPU has).

    ``choice``: ``auto`` (where it is faster, see ``isa_cap_helps_here``; a
    ``DNNL_MAX_CPU_ISA`` the user set is kept), ``all`` (no cap), ``avx512_mic`` or ``avx2``
    (fp32 only)."""
    make_sure(choice in ISA_CHOICES, "oneDNN ISA must be one of %s, got %r",
              ", ".join(ISA_CHOICES), choice)
    if choice == "auto":
        if environ.get(ISA_ENV):
            return environ[ISA_ENV]
        cap = isa_cap_helps_here(precision, padded, cpuinfo)
        if cap:
            environ[ISA_ENV] = cap
        return cap
    make_sure(choice == "all" or precision == "fp32", "oneDNN ISA cap %s (--onednn-isa) is "
              "for fp32 networks: %s needs the VNNI or BF16 kernels it takes away", choice,
              precision)
    cap = None if choice == "all" else choice.upper()
    environ[ISA_ENV] = cap or "ALL"
    return cap


@contextlib.contextmanager
def isa_capped(choice, precision, padded, environ=os.environ, cpuinfo=None):
    """``cap_isa`` for the block, which must hold the process's first computation; the
    environment is given back after it.  oneDNN has read the cap by then and keeps it for
    the whole process, while the processes this one starts later do not inherit it."""
    before = environ.get(ISA_ENV)
    try:
        yield cap_isa(choice, precision, padded, environ, cpuinfo)
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
