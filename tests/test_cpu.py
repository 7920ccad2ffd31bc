"""oneDNN's instruction-set cap and AMX are the defaults where they were measured faster, bf16
is known unavailable without its kernels, and the CPU the defaults are chosen for can be
named (``XCEPTION_MX_CPUINFO``)."""
import os

import pytest

from conftest import DATA, cpu_file
from xception_mx.cpu import (CPUINFO_ENV, ISA_ENV, PROCESS, cap_isa, isa_cap_helps_here,
                             isa_capped, why_no_bf16)
from xception_mx.errors import InputError
from xception_mx.model.padding import padding_helps_here


def test_onednn_isa_cap_is_the_default_where_it_was_measured_faster(tmp_path, monkeypatch):
    """fp32 on AMD's AVX-512 (the depthwise reorders go, the forward about 10% faster on an
    EPYC): AVX2 for 728 channels, AVX512_MIC for 16-channel blocks, in a process that runs
    one precision (a bf16 network could not run after it).  Not on Intel (not measured;
    brgconv is its fast path), never for int8 or bf16; a cap the user set is kept, and an
    explicit choice wins."""
    amd = cpu_file(tmp_path, "AuthenticAMD", "fpu avx2 avx512f avx512bw")
    intel = cpu_file(tmp_path, "GenuineIntel", "fpu avx2 avx512f avx512bw")
    assert isa_cap_helps_here("fp32", False, amd, one_precision=True) == "AVX2"
    assert isa_cap_helps_here("fp32", True, amd, one_precision=True) == "AVX512_MIC"
    assert isa_cap_helps_here("fp32", False, amd, one_precision=False) is None
    monkeypatch.setitem(PROCESS, "one_precision", False)
    assert isa_cap_helps_here("fp32", False, amd) is None        # the library: bf16 may follow
    monkeypatch.setitem(PROCESS, "one_precision", True)          # as the commands declare
    assert isa_cap_helps_here("fp32", True, intel) is None
    assert isa_cap_helps_here("fp32", False, cpu_file(tmp_path, "AuthenticAMD", "avx2")) is None
    assert isa_cap_helps_here("int8", False, amd) is isa_cap_helps_here("bf16", True, amd) is None
    environ = {}
    assert cap_isa("auto", "fp32", False, environ, amd) == "AVX2" == environ[ISA_ENV]
    environ = {ISA_ENV: "AVX512_CORE"}
    assert cap_isa("auto", "fp32", False, environ, amd) == "AVX512_CORE" == environ[ISA_ENV]
    assert cap_isa("all", "fp32", False, environ, amd) is None and environ[ISA_ENV] == "ALL"
    environ = {}
    assert cap_isa("auto", "int8", False, environ, amd) is None and environ == {}
    assert cap_isa("avx512_mic", "fp32", False, environ, intel) == "AVX512_MIC"
    with pytest.raises(InputError, match="avx2 .--onednn-isa. is for fp32 networks: int8"):
        cap_isa("avx2", "int8", False, {}, amd)
    for before in ({}, {ISA_ENV: "AVX512_CORE"}):
        environ = dict(before)
        with isa_capped("avx2", "fp32", False, environ, amd) as cap:
            assert cap == "AVX2" == environ[ISA_ENV]
        assert environ == before


def test_amx_is_the_default_for_int8_and_bf16_where_the_cpu_has_it_and_linux_grants_it(
        tmp_path):
    """oneDNN 2.4 leaves its AMX kernels out unless DNNL_MAX_CPU_ISA=AVX512_CORE_AMX (measured
    on a Xeon: bf16 2.6x, int8 1.08x faster with them), and without Linux's permission
    the first AMX instruction kills the process (SIGILL): auto raises the ceiling only for
    the precisions the CPU's AMX serves, only when the permission was granted; an explicit
    amx or a user's own setting that cannot work is refused in one line."""
    amx = "fpu avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8 amx_bf16"
    sapphire = cpu_file(tmp_path, "GenuineIntel", amx)
    int8_only = cpu_file(tmp_path, "GenuineIntel", amx.replace(" amx_bf16", ""))
    amd = cpu_file(tmp_path, "AuthenticAMD", "fpu avx2 avx512f avx512bw avx512_bf16")
    for precision in ("int8", "bf16"):
        environ = {}
        assert cap_isa("auto", precision, True, environ, sapphire, amx_refused="") == (
            "AVX512_CORE_AMX") == environ[ISA_ENV]
        environ = {}
        assert cap_isa("auto", precision, True, environ, amd, amx_refused="") is None
        assert environ == {}
        refused = "Linux refused the AMX tile permission (Invalid argument)"
        assert cap_isa("auto", precision, True, environ, sapphire, amx_refused=refused) is None
        assert environ == {}
        with pytest.raises(InputError, match=r"^--onednn-isa amx: Linux refused the AMX tile "
                                             r"permission \(Invalid argument\)$"):
            cap_isa("amx", precision, True, {}, sapphire, amx_refused=refused)
        with pytest.raises(InputError, match="^DNNL_MAX_CPU_ISA=AVX512_CORE_AMX asks for "
                                             "oneDNN's AMX kernels, but Linux refused"):
            cap_isa("auto", precision, True, {ISA_ENV: "AVX512_CORE_AMX"}, sapphire,
                    amx_refused=refused)
        # where nothing would run AMX, the user's setting is harmless and kept
        assert cap_isa("auto", precision, True, {ISA_ENV: "AVX512_CORE_AMX"}, amd,
                       amx_refused=refused) == "AVX512_CORE_AMX"
    assert cap_isa("auto", "bf16", True, {}, int8_only, amx_refused="") is None
    assert cap_isa("auto", "int8", True, {}, int8_only, amx_refused="") == "AVX512_CORE_AMX"
    assert isa_cap_helps_here("fp32", True, sapphire, amx_refused="") is None
    with pytest.raises(InputError, match="^--onednn-isa amx: this CPU lacks amx_tile and "
                                         "amx_bf16$"):
        cap_isa("amx", "bf16", True, {}, amd, amx_refused="")
    with pytest.raises(InputError, match="^--onednn-isa amx: oneDNN has AMX kernels for "
                                         "int8 and bf16 only$"):
        cap_isa("amx", "fp32", True, {}, sapphire, amx_refused="")


def test_bf16_is_known_unavailable_without_avx512_core_kernels(tmp_path):
    skylake = cpu_file(tmp_path, "GenuineIntel", "avx2 avx512f avx512bw avx512vl avx512dq")
    assert why_no_bf16(skylake, {}) is None
    assert why_no_bf16(skylake, {ISA_ENV: "avx512_mic"}) == (
        "DNNL_MAX_CPU_ISA=AVX512_MIC caps them away")
    assert why_no_bf16(cpu_file(tmp_path, "AuthenticAMD", "avx2 fma"), {}) == (
        "this CPU lacks avx512f, avx512bw, avx512vl, avx512dq")
    assert why_no_bf16(str(tmp_path / "missing"), {}) is None       # unknown: let oneDNN try


def test_the_cpu_the_defaults_are_chosen_for_can_be_named(tmp_path, monkeypatch):
    """XCEPTION_MX_CPUINFO puts another CPU's /proc/cpuinfo behind the defaults (how the suite
    takes an Intel Xeon's default paths on an AMD machine, README); a file it names that cannot
    be read is an error, not an unknown CPU."""
    monkeypatch.setenv(CPUINFO_ENV, os.path.join(DATA, "cpuinfo-intel-xeon"))
    assert padding_helps_here() and padding_helps_here(precision="int8")
    assert isa_cap_helps_here("fp32", True) is None and why_no_bf16(environ={}) is None
    monkeypatch.setenv(CPUINFO_ENV, cpu_file(tmp_path, "AuthenticAMD", "avx2 avx512f"))
    assert not padding_helps_here()
    assert isa_cap_helps_here("fp32", False, one_precision=True) == "AVX2"
    monkeypatch.setenv(CPUINFO_ENV, str(tmp_path / "missing"))
    with pytest.raises(InputError, match="XCEPTION_MX_CPUINFO=.*missing: cannot read it"):
        padding_helps_here()


def test_after_the_first_network_its_cap_holds_and_other_choices_are_refused(monkeypatch):
    """oneDNN reads its cap once: a later network runs under the first one's (recorded), bf16
    is refused where that cap took its kernels, and an explicit other cap (or a bad choice)
    is refused instead of silently not applying."""
    monkeypatch.setitem(PROCESS, "cap", "AVX2")
    with isa_capped("auto", "fp32", False) as cap:
        assert cap == "AVX2"
    with isa_capped("avx2", "fp32", False) as cap:
        assert cap == "AVX2"
    with isa_capped("auto", "int8", False) as cap:               # int8 runs on AVX2 kernels
        assert cap == "AVX2"
    with pytest.raises(InputError, match="bf16 cannot run in this process: oneDNN took the "
                       "cap DNNL_MAX_CPU_ISA=AVX2"):
        with isa_capped("auto", "bf16", True):
            pass
    with pytest.raises(InputError, match="oneDNN ISA all cannot apply: oneDNN took the cap "
                       "DNNL_MAX_CPU_ISA=AVX2 when the process's first network ran"):
        with isa_capped("all", "fp32", False):
            pass
    with pytest.raises(InputError, match="must be one of"):
        with isa_capped("bogus", "fp32", False):
            pass
    monkeypatch.setitem(PROCESS, "cap", "ALL")
    with isa_capped("all", "bf16", True) as cap:
        assert cap is None
