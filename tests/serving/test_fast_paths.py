"""Fast inference paths keep their fidelity: fused fp32 keeps Keras parity,
bf16 and int8 agree with fp32 on the top-1 class of every sample photo."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from conftest import PHOTOS, assert_bad_input, cpu_file, failure_output, run_tool
from xception_mx.conversion import convert_file
from xception_mx import keras_side
from xception_mx.cpu import AMX_ISA, ISA_ENV, why_no_amx, why_no_bf16
from xception_mx.images.decode import load_images
from xception_mx.serving.fast import load_fast_network, logits_agreement
from xception_mx.checkpoint.labels import imagenet_classes
from xception_mx.serving.loading import load_network, run_batches

SHAPE = (299, 299)
ISA_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "isa_worker.py")


@pytest.fixture(scope="module")
def setup(keras_files_top, reference_model, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("fast") / "x")
    convert_file(keras_files_top["legacy-h5"], prefix, input_shape=SHAPE)
    noise = np.random.RandomState(3).uniform(-1, 1, (3, 3) + SHAPE).astype(np.float32)
    x = np.concatenate([load_images(PHOTOS, SHAPE), noise])
    plain, _ = load_network(prefix, output="logits")
    return prefix, x, run_batches(plain, x), keras_side.keras_predict(reference_model, x)


@pytest.mark.slow
def test_fused_fp32_keeps_keras_parity(setup):
    prefix, x, plain, keras_out = setup
    net, _ = load_fast_network(prefix, precision="fp32")
    fused = run_batches(net, x)
    assert np.abs(fused - keras_out).max() <= 1e-4
    assert np.abs(fused - plain).max() <= 1e-5


@pytest.mark.slow
# Both paddings, whatever this CPU's default: Intel's auto pads int8, AMD's does not.
@pytest.mark.parametrize("padding", ["off", "on"])
# bf16: 0.014-0.021 measured (BatchNorm folded in float32); folded in bf16 by oneDNN, 0.075
@pytest.mark.parametrize("precision, max_dev", [("bf16", 0.04), ("int8", 0.5)])
def test_reduced_precision_agrees_with_fp32_on_every_photo(precision, max_dev, padding, setup):
    prefix, x, plain, _ = setup
    photos = len(PHOTOS)
    net, _ = load_fast_network(prefix, precision=precision, calibration=x[:photos],
                               pad_channels=padding)
    out = run_batches(net, x)
    agreement = logits_agreement(plain[:photos], out[:photos])
    assert agreement["top1"] == 1.0
    assert np.isfinite(out).all() and agreement["max_abs"] <= max_dev


@pytest.mark.slow
@pytest.mark.parametrize("padding", ["off", "on"])
def test_quantized_checkpoint_is_a_normal_checkpoint(padding, setup, tmp_path):
    prefix, x, plain, _ = setup
    out = tmp_path / "int8"
    result = run_tool("xception-quantize", prefix, "-o", out, "--calib-images", *PHOTOS,
                      "--channel-padding", padding)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "int8-meta.json").read_text())
    assert meta["precision"] == "int8" and meta["calibration"]["images"] == len(PHOTOS)
    assert (meta["optimized"]["padded_convolutions"] > 0) == (padding == "on")
    params = mx.nd.load(str(out) + "-0000.params")
    assert any(v.dtype == np.int8 for v in params.values())
    net = mx.gluon.SymbolBlock.imports(str(out) + "-symbol.json", ["data"],
                                       str(out) + "-0000.params")
    got = net(mx.nd.array(x[:len(PHOTOS)])).asnumpy()
    assert (got.argmax(1) == plain[:len(PHOTOS)].argmax(1)).all()
    predicted = run_tool("xception-predict", out, PHOTOS[0], "--top", "1")
    assert predicted.returncode == 0, predicted.stderr
    refused = run_tool("xception-predict", out, PHOTOS[0], "--precision", "bf16")
    assert refused.returncode == 2 and "--precision int8" in refused.stderr


def run_capped(prefix, x, choice, padding, tmp_path):
    """``(report, logits)`` of ``isa_worker.py``: the fused network in a process of its own
    under oneDNN's ISA cap ``choice``."""
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npy"
    result = subprocess.run([sys.executable, ISA_WORKER, prefix, choice, padding,
                             str(tmp_path / "x.npy"), str(out)], capture_output=True, text=True,
                            env=dict(os.environ, MKLDNN_VERBOSE="1"), timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), np.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("choice, padding", [("avx2", "off"), ("avx512_mic", "on")])
def test_onednn_isa_cap_removes_the_depthwise_reorders_and_keeps_keras_parity(
        choice, padding, setup, tmp_path):
    """Uncapped on an AVX-512 CPU, oneDNN runs the depthwise convolutions on brdgmm_dw
    kernels that take NHWC, and MXNet reorders to NHWC and back around them: 58 reorders a
    forward (BENCHMARKS.md 2b).  Capped, both kinds of kernel share one blocked layout: the
    only reorder left is the input's, from NCHW."""
    prefix, x, _, keras_out = setup
    report, logits = run_capped(prefix, x, choice, padding, tmp_path)
    assert report["cap"] == choice.upper()
    # given back after the first computation, so processes the caller starts later are not
    # capped; the kernels below show the cap still holds
    assert report["env"] == os.environ.get("DNNL_MAX_CPU_ISA"), report
    assert report["primitives"] > 70 and report["reorders"] <= 1, report
    assert not [i for i in report["implementations"] if "avx512_core" in i], report
    assert np.abs(logits - keras_out).max() <= 1e-4


def test_onednn_isa_cap_is_refused_for_int8_and_bf16(setup):
    for precision in ("int8", "bf16"):
        assert_bad_input(run_tool("xception-predict", setup[0], PHOTOS[0], "--precision",
                                  precision, "--onednn-isa", "avx2"),
                         "oneDNN ISA cap avx2 (--onednn-isa) is for fp32", precision)


def test_bf16_without_onednn_avx512_kernels_is_refused_in_one_line(setup):
    """oneDNN 2.4 has bf16 kernels from avx512_core up; below (an AVX2 CPU, or oneDNN capped)
    a bf16 convolution failed with a traceback ("could not create a primitive descriptor
    iterator").  The cap stands in for a CPU without AVX-512."""
    result = run_tool("xception-predict", setup[0], PHOTOS[0], "--precision", "bf16",
                      env={"DNNL_MAX_CPU_ISA": "AVX2"})
    assert_bad_input(result, "bf16 needs oneDNN's AVX-512 kernels", "DNNL_MAX_CPU_ISA=AVX2")
    assert result.stdout == ""


def test_bf16_predict_runs_on_onednn_bf16_kernels_not_gemm_fallbacks_nor_batchnorm(setup):
    """Unpadded, oneDNN has no bf16 kernel for the middle flow's 728-channel blocks and runs
    those convolutions on gemm (x64:gemm:jit), half the speed (BENCHMARKS.md section 3), on
    any AVX-512 CPU: xception-predict's auto pads bf16 networks there, so every convolution
    of a forward but the one reading the image's 3 channels runs on a blocked bf16 kernel
    (MKLDNN_VERBOSE's exec lines)."""
    result = run_tool("xception-predict", setup[0], PHOTOS[0], "--precision", "bf16",
                      env={"MKLDNN_VERBOSE": "1"})
    assert result.returncode == 0, result.stderr
    convolutions = [line.split(",") for line in result.stdout.splitlines()
                    if line.startswith("dnnl_verbose,exec,cpu,convolution,")]
    # (implementation, problem) of each; the first reads the image's 3 channels, a gemm too
    convolutions = [(fields[4], fields[-2]) for fields in convolutions]
    assert len(convolutions) >= 74, convolutions
    gemm = [c for c in convolutions if "gemm" in c[0] and "_ic3oc" not in c[1]]
    assert not gemm, gemm
    # bf16 kernels of oneDNN's AVX-512 families (avx512_core, _bf16, Intel's _amx...)
    assert all(i.split(":")[-1].startswith("avx512_core") for i, _ in convolutions
               if "gemm" not in i), set(convolutions)
    # BatchNorm is folded into the convolutions (serving/folding.py), not run on its own:
    # AMP alone ran 40 float32 BatchNorms a forward, a fifth of its time (bench/NOTES.md)
    assert not [line for line in result.stdout.splitlines()
                if line.startswith("dnnl_verbose,exec,cpu,batch_normalization,")]


def predict_top1_and_kernels(prefix, *args, env=None):
    """xception-predict's top class of the first 3 photos, and the convolution kernels
    oneDNN ran (MKLDNN_VERBOSE's exec lines, which go to stdout too)."""
    result = run_tool("xception-predict", prefix, *PHOTOS[:3], "--top", "1", *args,
                      env=dict({"MKLDNN_VERBOSE": "1"}, **(env or {})))
    assert result.returncode == 0, result.stderr
    tops = [line.split("  ", 2)[-1] for line in result.stdout.splitlines()
            if line.startswith("  1.")]
    kernels = {line.split(",")[4] for line in result.stdout.splitlines()
               if line.startswith("dnnl_verbose,exec,cpu,convolution,")}
    assert len(tops) == 3 and kernels, result.stdout[-2000:]
    return tops, kernels


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_int8_and_bf16_run_on_amx_where_the_cpu_has_it_and_agree_with_fp32(precision, setup):
    """On a CPU with AMX (Intel Xeon, Sapphire Rapids on), xception-predict runs int8 and bf16
    on oneDNN's AMX kernels, which oneDNN 2.4 leaves out unless asked, and a user's own
    DNNL_MAX_CPU_ISA=AVX512_CORE_AMX works too (it died of SIGILL: nobody asked Linux for
    the AMX tile state).  Elsewhere no AMX kernel runs and --onednn-isa amx is refused in one
    line.  Either way the top class is fp32's."""
    prefix, why_not = setup[0], why_no_amx(precision)    # None: this CPU and Linux allow it
    fp32, _ = predict_top1_and_kernels(prefix, "--precision", "fp32")
    tops, kernels = predict_top1_and_kernels(prefix, "--precision", precision)
    amx = [k for k in kernels if "_amx" in k]
    assert tops == fp32
    # auto keeps a DNNL_MAX_CPU_ISA the suite runs under (README: tests on a capped CPU)
    user_cap = os.environ.get(ISA_ENV, AMX_ISA).upper()
    assert bool(amx) == (why_not is None and user_cap == AMX_ISA), kernels
    if why_not is None:
        tops, kernels = predict_top1_and_kernels(prefix, "--precision", precision,
                                                 "--onednn-isa", "all")
        assert tops == fp32 and not [k for k in kernels if "_amx" in k], kernels
        tops, kernels = predict_top1_and_kernels(prefix, "--precision", precision,
                                                 env={"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"})
        assert tops == fp32 and [k for k in kernels if "_amx" in k], kernels
    else:
        assert_bad_input(run_tool("xception-predict", prefix, PHOTOS[0], "--precision",
                                  precision, "--onednn-isa", "amx"),
                         "--onednn-isa amx: " + why_not)


def test_predict_precisions_agree_on_the_top_class(setup):
    prefix = setup[0]
    tops = {precision: predict_top1_and_kernels(prefix, "--precision", precision)[0]
            for precision in ("fp32", "bf16", "int8")}
    assert len(tops["fp32"]) == 3 and tops["fp32"] == tops["bf16"] == tops["int8"]
    keras_top = [imagenet_classes()[i] for i in setup[3][:3].argmax(1)]   # Keras' own logits
    assert tops["fp32"] == ["%s (%s)" % (name, synset) for synset, name in keras_top]


@pytest.mark.slow
def test_optimized_fp32_export_loads_in_plain_mxnet_and_keeps_keras_parity(setup, tmp_path):
    """``xception-quantize --precision fp32``: the padded, oneDNN-fused graph as ordinary
    files that Module and SymbolBlock.imports load, for serving outside this toolkit."""
    prefix, x, plain, keras_out = setup
    out = str(tmp_path / "served")
    result = run_tool("xception-quantize", prefix, "-o", out, "--precision", "fp32",
                      "--channel-padding", "on")
    assert result.returncode == 0, result.stderr
    meta = json.loads(open(out + "-meta.json").read())
    assert meta["precision"] == "fp32" and meta["optimized"]["padded_convolutions"] > 0
    graph = json.loads(open(out + "-symbol.json").read())
    assert any(n["op"].startswith("_sg_mkldnn") for n in graph["nodes"])      # fused
    symbol, args, aux = mx.model.load_checkpoint(out, 0)
    assert args["block4_sepconv1_pointwise_weight"].shape[0] == 736          # padded
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None)
    module.bind(data_shapes=[("data", x.shape)], for_training=False)
    module.set_params(args, aux)
    module.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    served = module.get_outputs()[0].asnumpy()
    assert np.abs(served - keras_out).max() <= 1e-4
    net = mx.gluon.SymbolBlock.imports(out + "-symbol.json", ["data"], out + "-0000.params")
    assert np.abs(net(mx.nd.array(x)).asnumpy() - served).max() <= 1e-5
    predicted = run_tool("xception-predict", out, PHOTOS[0], "--top", "1")
    assert predicted.returncode == 0, predicted.stderr
    assert_bad_input(run_tool("xception-finetune", tmp_path, "--out", tmp_path / "run",
                              "--pretrained", out), "--pretrained needs the fp32 checkpoint "
                     "it came from", prefix)
    assert_bad_input(run_tool("xception-quantize", out, "-o", tmp_path / "again",
                              "--precision", "fp32"), "already an optimized fp32", prefix)
    assert not os.path.exists(str(tmp_path / "again-meta.json"))


@pytest.mark.parametrize("flags, fragment", [
    (["--precision", "fp32", "--calib-images", "x.jpg"],
     "--calib-images calibrates int8; --precision fp32 takes none"),
    (["--precision", "int8"], "--precision int8 (the default) needs --calib-images"),
    ([], "--precision int8 (the default) needs --calib-images"),
    (["--precision", "bf16"], "bf16 is converted when the network is loaded")])
def test_export_flags_that_cannot_work_are_refused(flags, fragment, tmp_path):
    assert_bad_input(run_tool("xception-quantize", tmp_path / "x", "-o", tmp_path / "y",
                              *flags), fragment)


ORDER_SCRIPT = """
import sys
import numpy as np
import xception_mx as xm
prefix, x = sys.argv[1], np.load(sys.argv[2])
first = None
for precision in ("fp32", "bf16", "int8", "fp32"):
    out = xm.load(prefix, precision=precision).logits(x)
    first = out if first is None else first
    print(precision, bool(np.isfinite(out).all()),
          "%.3f" % np.corrcoef(out.ravel(), first.ravel())[0, 1], flush=True)
try:
    xm.load(prefix, precision="bf16", onednn_isa="all").logits(x)
    print("bf16 again", flush=True)
except xm.InputError as exc:
    print("refused:", exc)
"""


@pytest.mark.skipif(why_no_bf16(environ={}) is not None, reason="this CPU has no bf16 kernels")
def test_precisions_run_in_any_order_in_one_process(base, tmp_path):
    """On an AMD CPU with AVX-512 (its cpuinfo named), the fp32 network's ``auto`` capped oneDNN
    at AVX2, which holds for the process: a bf16 network after it ended in "could not create a
    primitive descriptor iterator".  In the library (and evaluate --compare) fp32 keeps every
    kernel: bf16, int8 and fp32 run in any order, each close to the first fp32 (correlation
    of the logits; a broken network is near 0).  A cap asked for explicitly still holds for
    the process, and bf16 after it is refused in one line."""
    amd = cpu_file(tmp_path, "AuthenticAMD", "avx2 avx512f avx512bw avx512vl avx512dq "
                   "avx512_bf16 avx512_vnni")
    np.save(tmp_path / "x.npy", load_images(PHOTOS, (71, 71)))
    prefix, script = str(base / "x71"), tmp_path / "order.py"
    script.write_text(ORDER_SCRIPT)
    env = dict(os.environ, XCEPTION_MX_CPUINFO=amd)
    done = subprocess.run([sys.executable, str(script), prefix, str(tmp_path / "x.npy")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, failure_output(done)
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [line[:2] for line in lines[:4]] == [["fp32", "True"], ["bf16", "True"],
                                                ["int8", "True"], ["fp32", "True"]], lines
    assert all(float(line[2]) > 0.9 for line in lines[:4]) and lines[3][2] == "1.000", lines
    assert lines[4] == ["bf16", "again"], lines
    capped = ORDER_SCRIPT.replace('precision=precision)', 'precision=precision, '
                                  'onednn_isa="avx2" if precision == "fp32" else "auto")')
    script.write_text(capped.replace('("fp32", "bf16", "int8", "fp32")', '("fp32",)'))
    done = subprocess.run([sys.executable, str(script), prefix, str(tmp_path / "x.npy")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, failure_output(done)
    assert done.stdout.splitlines()[-1] == (
        "refused: bf16 cannot run in this process: oneDNN took the cap DNNL_MAX_CPU_ISA=AVX2 "
        "when the process's first network ran and keeps it (bf16 needs its AVX-512 kernels); "
        "run bf16 in a new process, or give the first network onednn_isa='all' "
        "(--onednn-isa all)")
