"""The multi-GPU path's defects that several CPU contexts hide, each shown without a GPU:
AMP's step, the GPU a Horovod process takes, where trainer states load, ``--gpus`` itself."""
import importlib
import os
import pickle
import re
import struct
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from xception_mx.errors import InputError
from xception_mx.faults import PARAMS_DUMP
from xception_mx.training.distributed import devices
from xception_mx.training.distributed.devices import (check_horovod_gpus, horovod_contexts,
                                                      parse_contexts)
from xception_mx.training.padded_training import ShapeMap
from xception_mx.training.recipe.optimizers import resolve_optimizer
from xception_mx.training.train import make_trainer, train_step

from conftest import BIN, assert_bad_input, failure_output, run_tool

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH = os.path.join(BIN, "xception-launch")
FINETUNE = os.path.join(BIN, "xception-finetune")
BOUND = ("--timeout", "400")     # no test can hang the suite
FINETUNE_NAME = "xception-finetune"


def test_an_amp_step_runs_through_the_loss_scaler_and_moves_the_weights():
    """``--amp`` failed at its first step: the losses were scaled after ``autograd.record``
    had closed, outside the graph ("Cannot differentiate node ...")."""
    result = subprocess.run([sys.executable, os.path.join(HERE, "amp_worker.py")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    moved, loss, scale = (float(v) for v in result.stdout.split()[1::2])
    assert moved > 0 and 0 < loss < 10 and scale > 1, result.stdout


@pytest.fixture
def gpu_build(monkeypatch):
    """The installed MXNet passes for a GPU build with code for every GPU (this machine's is
    a CPU build: ``test_gpu_code.py`` tests that check)."""
    monkeypatch.setattr(devices, "check_gpu_code", lambda flag, ids: None)


@pytest.fixture
def four_gpus(monkeypatch, gpu_build):
    """MXNet sees four GPUs (``mx.gpu(i)`` contexts are only names until used)."""
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 4)


def test_gpus_lists_each_visible_gpu_once(four_gpus):
    assert parse_contexts("0,1,2,3") == [mx.gpu(i) for i in range(4)]
    assert parse_contexts("2, 3,") == [mx.gpu(2), mx.gpu(3)]
    for flag, message in ((",", "expected comma-separated GPU numbers"),
                          ("0,0", "GPU 0 given more than once"),
                          ("1,x", "expected comma-separated GPU numbers"),
                          ("4", "only 4 GPUs visible (0..3)")):
        with pytest.raises(InputError, match=re.escape("--gpus %s: %s" % (flag, message))):
            parse_contexts(flag)


def test_an_mxnet_error_counting_gpus_is_one_line(monkeypatch, gpu_build):
    def broken():
        raise mx.base.MXNetError("Traceback...\nCUDA: CUDA driver version is insufficient")
    monkeypatch.setattr(mx.context, "num_gpus", broken)
    with pytest.raises(InputError, match=r"--gpus 0: MXNet cannot count the GPUs \(CUDA: CUDA "
                                         r"driver version is insufficient\)"):
        parse_contexts("0")


@pytest.mark.parametrize("flag, message", [(",", "--gpus ,: expected comma-separated GPU"),
                                           ("0,0", "--gpus 0,0: GPU 0 given more than once")])
def test_xception_finetune_refuses_empty_and_repeated_gpus(tmp_path, flag, message):
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
    result = run_tool("xception-finetune", data, "--out", tmp_path / "run", "--gpus", flag)
    assert_bad_input(result, message)
    assert not (tmp_path / "run").exists()


def test_a_horovod_process_takes_the_gpu_at_its_local_rank(four_gpus):
    listed = parse_contexts("0,1,2,3")
    assert [horovod_contexts(listed, rank, "0,1,2,3") for rank in range(4)] == \
        [[mx.gpu(i)] for i in range(4)]
    # one GPU listed: the first process takes it, a second on the machine is refused (it
    # used to share it silently: the choice was skipped for a single --gpus entry)
    assert horovod_contexts(parse_contexts("1"), 0, "1") == [mx.gpu(1)]
    with pytest.raises(InputError, match="1 GPU.s. listed for more Horovod processes on this "
                                         "machine .local rank 1."):
        horovod_contexts(parse_contexts("1"), 1, "1")
    assert horovod_contexts([mx.cpu(0)], 3, None) == [mx.cpu(0)]


def test_gpus_under_a_horovod_built_without_cuda_are_refused_with_how_to_rebuild():
    class Horovod:
        def __init__(self, cuda):
            self.cuda = cuda

        def cuda_built(self):
            return self.cuda
    with pytest.raises(InputError, match="built without GPU support .* HOROVOD_GPU_OPERATIONS="
                                         "NCCL make setup-horovod"):
        check_horovod_gpus(Horovod(False), "0,1")
    check_horovod_gpus(Horovod(True), "0,1")
    check_horovod_gpus(Horovod(False), None)             # CPU processes need no CUDA
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in devices.HOROVOD_GPU_BUILD


def pickled_devices(path):
    """``(device type, device id)`` of every NDArray in a pickled states file, read from the
    bytes MXNet pickles (a CPU build loads them all onto cpu(0) and would hide it)."""
    found = []
    original = mx.nd.NDArray.__setstate__

    def record(array, state):
        raw = bytes(state["handle"])
        ndim = struct.unpack_from("<i", raw, 8)[0]
        found.append(struct.unpack_from("<ii", raw, 12 + 8 * ndim))
        original(array, state)
    mx.nd.NDArray.__setstate__ = record
    try:
        with open(path, "rb") as f:
            pickle.load(f)
    finally:
        mx.nd.NDArray.__setstate__ = original
    return found


def test_trainer_states_are_written_as_cpu_arrays_whatever_the_contexts(tmp_path):
    contexts = [mx.cpu(1), mx.cpu(2)]
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(ctx=contexts)
    trainer = make_trainer(net.collect_params(),
                           resolve_optimizer("adam", 0.01, {"momentum": 0.9, "wd": 0.0}), "device")
    step = (mx.nd.random.uniform(shape=(4, 4)), mx.nd.array([0, 1, 2, 0]))
    train_step(net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(), *step, contexts)
    ShapeMap(net, net).save_states(trainer, str(tmp_path / "states"))
    found = pickled_devices(str(tmp_path / "states"))
    assert len(found) == 4 and set(found) == {(1, 0)}, found    # Adam: mean, var; cpu(0)
    again = make_trainer(net.collect_params(),
                         resolve_optimizer("adam", 0.01, {"momentum": 0.9, "wd": 0.0}), "device")
    ShapeMap(net, net).load_states(again, str(tmp_path / "states"))
    before = net.weight.data(contexts[1]).copy()
    train_step(net, again, gluon.loss.SoftmaxCrossEntropyLoss(), *step, contexts)
    assert (net.weight.data(contexts[1]) - before).abs().max().asscalar() > 0


@pytest.mark.slow
def test_a_dist_device_sync_job_on_two_cpu_contexts_per_worker_ends_identical(base, tmp_path):
    """``dist_device_sync``, the GPU parameter-server mode (MXNet's CommDevice merges each
    worker's devices), run on CPU contexts: it finishes, exports, and every device of every
    worker ends with the same parameters."""
    out = tmp_path / "run"
    result = subprocess.run(
        [LAUNCH, "-n", "2", "-s", "1", *BOUND, "--", FINETUNE, base / "data", "--out", out,
         "--pretrained", base / "x71", "--input-shape", "71", "71", "--batch-size", "4",
         "--cpus", "2", "--epochs", "1", "--workers", "0", "--kvstore", "dist_device_sync"],
        capture_output=True, text=True, timeout=450,
        env=dict(os.environ, **{PARAMS_DUMP: str(tmp_path)}))
    assert result.returncode == 0, failure_output(result)
    assert (out / "model-0000.params").exists() and (out / "epoch-0001.json").exists()
    ranks = [np.load(tmp_path / ("params-epoch1-rank%d.npz" % r)) for r in (0, 1)]
    names = sorted({key.split("@")[0] for key in ranks[0].files})
    assert len(ranks[0].files) == 2 * len(names)                  # two devices a worker
    start = mx.nd.load(str(base / "x71-0000.params"))
    moved = 0
    for name in names:
        copies = [rank["%s@%d" % (name, device)] for rank in ranks for device in (0, 1)]
        for copy in copies[1:]:
            np.testing.assert_array_equal(copy, copies[0], err_msg=name)
        before = start.get("arg:" + name, start.get("aux:" + name))
        if before is not None and before.shape == copies[0].shape:   # not the new head
            moved += np.abs(copies[0] - before.asnumpy()).max() > 0
    assert moved > 100                      # it trained: the base's parameters moved


def test_the_gpu_check_dry_run_lists_every_case_with_flags_the_tools_accept():
    from test_readme import ROOT, commands, console_scripts, toolkit_invocations
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--dry-run",
                             "--gpus", "0,1,2,3"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    cases = re.findall(r"^# case (\S+)$", result.stdout, re.M)
    assert cases == ["device-1", "device-4", "amp-1", "amp-4", "dist-4", "horovod-4"]
    tools, checked = console_scripts(), {}
    for line in result.stdout.splitlines():
        for tokens in commands(line[2:] if line.startswith("+ ") else ""):
            for tool, args in toolkit_invocations(tokens, tools):
                importlib.import_module(tools[tool]).build_parser().parse_args(args)
                checked[tool] = checked.get(tool, 0) + 1
    assert checked == {"keras2mxnet": 1, "xception-finetune": 6, "xception-launch": 1}
    assert "--kvstore dist_device_sync" in result.stdout and "--gpus 0,1 " in result.stdout
    assert "horovodrun -np 4" in result.stdout and result.stdout.count("--amp") == 2
    odd = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--dry-run",
                          "--gpus", "0,1,2"], capture_output=True, text=True, timeout=60)
    assert odd.returncode == 2 and "give an even number of GPUs" in odd.stderr


@pytest.mark.parametrize("mxnet_has_cuda", [True, False])
def test_make_setup_horovod_builds_gpu_operations_where_mxnet_has_cuda(tmp_path, mxnet_has_cuda):
    """The venv's MXNet decides (a CUDA toolkit alone does not: this machine has one and a
    CPU MXNet); ``make -n`` prints the build command without running it."""
    from test_readme import ROOT
    python = tmp_path / "python"           # answers the Makefile's question about MXNet
    python.write_text("#!/bin/sh\necho %s\n" % ("NCCL" if mxnet_has_cuda else ""))
    python.chmod(0o755)
    shown = subprocess.run(["make", "-n", "-B", "BIN=%s" % tmp_path, "setup-horovod"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    build = [line for line in shown.stdout.splitlines() if "HOROVOD_WITH_MXNET=1" in line]
    assert len(build) == 1
    assert ("HOROVOD_GPU_OPERATIONS=NCCL" in build[0]) == mxnet_has_cuda, build[0]


@pytest.mark.slow
def test_amp_on_cpu_contexts_trains_in_bfloat16_and_keeps_float32_checkpoints(base, tmp_path):
    out = tmp_path / "run"
    result = run_tool(FINETUNE_NAME, base / "data", "--out", out, "--pretrained", base / "x71",
                      "--input-shape", 71, 71, "--batch-size", 8, "--cpus", 2, "--epochs", 1,
                      "--workers", 0, "--amp")
    assert result.returncode == 0, result.stderr[-3000:]
    params = mx.nd.load(str(out / "model-0000.params"))
    assert {str(v.dtype) for v in params.values()} == {str(np.float32)}
    start = mx.nd.load(str(base / "x71-0000.params"))
    moved = np.abs(params["arg:block1_conv1_weight"].asnumpy()
                   - start["arg:block1_conv1_weight"].asnumpy()).max()
    assert np.isfinite(moved) and moved > 0


def test_amp_on_a_cpu_without_bf16_kernels_is_refused_in_one_line(base, tmp_path):
    result = run_tool(FINETUNE_NAME, base / "data", "--out", tmp_path / "run", "--amp",
                      env={"DNNL_MAX_CPU_ISA": "AVX2"})
    assert_bad_input(result, "--amp on CPUs trains in bfloat16", "DNNL_MAX_CPU_ISA=AVX2",
                     "train without --amp")
    assert not (tmp_path / "run").exists()
