"""Channel padding for oneDNN computes the same function, and is left out where the padding
could reach an output (Keras' parity of the padded Xception: test_parity_with_keras.py); where
padding and oneDNN's ISA cap are the defaults."""
import os

import mxnet as mx
import numpy as np
import pytest

from conftest import DATA
from xception_mx.cpu import (CPUINFO_ENV, ISA_ENV, cap_isa, isa_cap_helps_here, isa_capped,
                             why_no_bf16)
from xception_mx.errors import InputError
from xception_mx.model.padding import pad_array, pad_network, padded_count, padding_helps_here

SHAPE = (2, 3, 9, 9)


def random_params(symbol, seed=0):
    """Arguments and auxiliary states of SYMBOL at SHAPE, random, variances positive."""
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=SHAPE)
    args = {n: mx.nd.array(rng.uniform(-1, 1, s)) for n, s in
            zip(symbol.list_arguments(), arg_shapes) if n != "data"}
    aux = {n: mx.nd.array(rng.uniform(0.5, 1.5, s)) for n, s in
           zip(symbol.list_auxiliary_states(), aux_shapes)}
    return args, aux


def run(symbol, args, aux, x):
    executor = symbol.bind(mx.cpu(), dict(args, data=mx.nd.array(x)), aux_states=aux)
    return executor.forward(is_train=False)[0].asnumpy()


def middle_flow(head=None):
    """conv 12 -> BN -> relu -> depthwise -> conv 12 -> + residual -> max pool -> conv 20,
    and optionally a head after it."""
    data = mx.sym.var("data")
    a = mx.sym.Convolution(data, num_filter=12, kernel=(1, 1), no_bias=True, name="a")
    a = mx.sym.BatchNorm(a, fix_gamma=False, name="a_bn")
    b = mx.sym.Activation(a, act_type="relu")
    b = mx.sym.Convolution(b, num_filter=12, num_group=12, kernel=(3, 3), pad=(1, 1),
                           no_bias=True, name="dw")
    b = mx.sym.Convolution(b, num_filter=12, kernel=(1, 1), no_bias=True, name="pw")
    b = mx.sym.BatchNorm(b, fix_gamma=False, name="pw_bn")
    c = mx.sym.Pooling(b + a, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    out = mx.sym.Convolution(c, num_filter=20, kernel=(1, 1), name="out")
    return head(c) if head else out


def test_padded_count_rounds_up_to_the_block():
    assert [padded_count(n) for n in (1, 16, 728, 1024)] == [16, 16, 736, 1024]


def test_pad_array_grows_every_axis_at_the_end():
    grown = pad_array(np.ones((2, 3)), (4, 3), fill=7.0)
    np.testing.assert_array_equal(grown, [[1, 1, 1], [1, 1, 1], [7, 7, 7], [7, 7, 7]])


def test_padded_network_is_the_same_function_with_16_channel_blocks():
    symbol = middle_flow()
    args, aux = random_params(symbol)
    padded, pargs, paux, changed = pad_network(symbol, args, aux, SHAPE)
    assert sorted(changed) == ["a", "dw", "pw"]
    assert pargs["pw_weight"].shape == (16, 16, 1, 1) and pargs["dw_weight"].shape[0] == 16
    assert pargs["out_weight"].shape == (20, 16, 1, 1)
    # every padded slice is exactly zero (a BatchNorm's variance 1), the rest as it was
    for name, value in list(pargs.items()) + list(paux.items()):
        value, old = value.asnumpy(), dict(args, **aux)[name].asnumpy()
        np.testing.assert_array_equal(value[tuple(slice(0, n) for n in old.shape)], old)
        rest = value.copy()
        rest[tuple(slice(0, n) for n in old.shape)] = 1.0 if name.endswith("_var") else 0.0
        assert (rest == (1.0 if name.endswith("_var") else 0.0)).all(), name
    x = np.random.RandomState(1).uniform(-1, 1, SHAPE).astype(np.float32)
    before, after = run(symbol, args, aux, x), run(padded, pargs, paux, x)
    assert after.shape == before.shape
    # the same sums in the same order plus exact zeros
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)


def test_padding_that_would_reach_a_dense_layer_is_left_out():
    symbol = middle_flow(lambda c: mx.sym.FullyConnected(mx.sym.Flatten(c), num_hidden=3,
                                                         name="fc"))
    args, aux = random_params(symbol)
    same, sargs, saux, changed = pad_network(symbol, args, aux, SHAPE)
    assert changed == [] and same is symbol and sargs is args and saux is aux


def cpu_file(directory, vendor, flags):
    """A /proc/cpuinfo of two processors."""
    path = directory / ("%s-%s" % (vendor, flags.replace(" ", "_")))
    path.write_text("processor\t: 0\nvendor_id\t: %s\nflags\t\t: %s\n\n"
                    "processor\t: 1\n" % (vendor, flags))
    return str(path)


def test_padding_is_the_default_where_it_was_measured_faster(tmp_path):
    """Inference: Intel AVX-512 gains (1.48x at batch 8), AMD's AVX-512 does not, except in
    bf16.  Training: any AVX-512 CPU gains."""
    def cpu(vendor, flags):
        return cpu_file(tmp_path, vendor, flags)
    assert padding_helps_here(cpu("GenuineIntel", "fpu sse2 avx2 avx512f avx512bw"))
    assert not padding_helps_here(cpu("GenuineIntel", "fpu sse2 avx2 fma"))
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu sse2 avx2 avx512f avx512bw"))
    assert not padding_helps_here(str(tmp_path / "missing"))
    # Training: padded is faster on any AVX-512 CPU (AMD EPYC measured 1.09x).
    assert padding_helps_here(cpu("AuthenticAMD", "fpu avx2 avx512f"), training=True)
    assert padding_helps_here(cpu("GenuineIntel", "fpu avx2 avx512f"), training=True)
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu sse2 avx2 fma"), training=True)
    assert not padding_helps_here(str(tmp_path / "missing"), training=True)
    # bf16: unpadded, 728 channels fall back to gemm convolutions (AMD EPYC measured 2.0x).
    assert padding_helps_here(cpu("AuthenticAMD", "fpu avx2 avx512f"), precision="bf16")
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu avx2 avx512f"), precision="int8")
    assert padding_helps_here(cpu("GenuineIntel", "fpu avx2 avx512f"), precision="int8")
    assert not padding_helps_here(cpu("AuthenticAMD", "fpu sse2 avx2 fma"), precision="bf16")


def test_onednn_isa_cap_is_the_default_where_it_was_measured_faster(tmp_path):
    """fp32 on AMD's AVX-512 (the depthwise reorders go, the forward about 10% faster on an
    EPYC): AVX2 for 728 channels, AVX512_MIC for 16-channel blocks.  Not on Intel (not
    measured; brgconv is its fast path), never for int8 or bf16; a cap the user set is kept,
    and an explicit choice wins."""
    amd = cpu_file(tmp_path, "AuthenticAMD", "fpu avx2 avx512f avx512bw")
    intel = cpu_file(tmp_path, "GenuineIntel", "fpu avx2 avx512f avx512bw")
    assert isa_cap_helps_here("fp32", False, amd) == "AVX2"
    assert isa_cap_helps_here("fp32", True, amd) == "AVX512_MIC"
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
    assert not padding_helps_here() and isa_cap_helps_here("fp32", False) == "AVX2"
    monkeypatch.setenv(CPUINFO_ENV, str(tmp_path / "missing"))
    with pytest.raises(InputError, match="XCEPTION_MX_CPUINFO=.*missing: cannot read it"):
        padding_helps_here()
