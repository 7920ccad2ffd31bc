"""``--gpus`` and ``scripts/gpu_check.sh`` compare each GPU's compute capability with the code
in the installed ``libmxnet.so`` before MXNet runs, and refuse in one line naming the device,
the build's code and what runs there (no MXNet 1.9.1 wheel runs on an H100: "no kernel
image is available").  No GPU here: the libraries are real, built by nvcc with the code the
test asks for (the oracle is the ``-gencode`` list), and the GPUs are a stand-in
``nvidia-smi`` on ``PATH``."""
import os
import shutil
import subprocess

import pytest

from xception_mx.training.distributed.gpu_code import fatbin_entries, mxnet_library, runs_on

from conftest import BIN, assert_bad_input, run_tool

KERNEL = ('__global__ void twice(float *x) { x[threadIdx.x] *= 2; }\n'
          'extern "C" void launch(float *x) { twice<<<1, 32>>>(x); }\n')
GPUS = "0, NVIDIA H100 80GB HBM3, 9.0\n1, Tesla T4, 7.5\n2, NVIDIA L4, 8.9\n"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(folder, name, *codes):
    """A shared library with ``codes`` (``("sm", 75)``: SASS; ``("ptx", 86)``: PTX)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed: no GPU code to build")
    source = folder / "kernel.cu"
    source.write_text(KERNEL)
    gencode = []
    for kind, arch in codes:
        code = "sm_%d" % arch if kind == "sm" else "compute_%d" % arch
        gencode += ["-gencode", "arch=compute_%d,code=%s" % (arch, code)]
    path = folder / name
    subprocess.run([nvcc, "-shared", "-Xcompiler", "-fPIC", *gencode, "-o", str(path),
                    str(source)], check=True, capture_output=True, timeout=300)
    return str(path)


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu-code")
    return {"sass": build(folder, "libsass.so", ("sm", 75), ("sm", 80)),
            "ptx": build(folder, "libptx.so", ("sm", 75), ("sm", 80), ("ptx", 86))}


@pytest.fixture
def gpus(tmp_path):
    """``PATH`` with an ``nvidia-smi`` that lists an H100, a T4 and an L4, which CUDA numbers
    as ``nvidia-smi`` does (``CUDA_DEVICE_ORDER=PCI_BUS_ID``)."""
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '%s'\n" % GPUS.replace("\n", "\\n"))
    smi.chmod(0o755)
    return {"PATH": "%s:%s:%s" % (folder, BIN, os.environ["PATH"]),
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_the_code_a_library_holds_is_read_from_its_fatbin(libraries):
    assert fatbin_entries(libraries["sass"]) == {("sm", 75), ("sm", 80)}
    assert fatbin_entries(libraries["ptx"]) == {("sm", 75), ("sm", 80), ("ptx", 86)}
    assert fatbin_entries(mxnet_library()) == set()          # this machine's CPU build


def test_a_gpu_runs_sass_of_its_major_version_or_older_ptx():
    sass = {("sm", 50), ("sm", 60), ("sm", 70), ("sm", 80), ("sm", 86)}    # mxnet-cu117's
    assert [runs_on(sass, cc) for cc in [(3, 7), (5, 2), (7, 5), (8, 9), (9, 0), (12, 0)]] == \
        [False, True, True, True, False, False]
    assert runs_on(sass | {("ptx", 86)}, (9, 0)) and not runs_on({("ptx", 90)}, (8, 9))
    assert not runs_on({("sm", 86)}, (8, 0))


def test_finetune_on_a_cpu_build_says_so_before_mxnet_counts_gpus(tmp_path):
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
    result = run_tool("xception-finetune", data, "--out", tmp_path / "run", "--gpus", "0")
    assert_bad_input(result, "--gpus 0: the installed MXNet (%s) is a CPU build, with no GPU "
                     "code; install mxnet-cu112 or mxnet-cu117" % mxnet_library())
    assert not (tmp_path / "run").exists()


def finetune(tmp_path, library, env, *gpus_flag):
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True, exist_ok=True)
    return run_tool("xception-finetune", data, "--out", tmp_path / "run", *gpus_flag,
                    env=dict(env, XCEPTION_MX_FAULT="mxnet-library=" + library))


def test_finetune_refuses_a_gpu_the_build_has_no_code_for(libraries, gpus, tmp_path):
    result = finetune(tmp_path, libraries["sass"], gpus, "--gpus", "1,0")
    assert_bad_input(result, "--gpus 1,0: GPU 0 (NVIDIA H100 80GB HBM3) has compute "
                     "capability 9.0, which the installed MXNet (%s: machine code for sm_75, "
                     "sm_80; no PTX) cannot run; what runs there: NVIDIA's MXNet containers "
                     "24.05 and 24.06" % libraries["sass"])
    assert not (tmp_path / "run").exists()


def test_without_pci_order_every_gpu_is_checked(libraries, gpus, tmp_path):
    """CUDA's default order (fastest first) is not ``nvidia-smi``'s: MXNet's GPU 1 may be the
    H100, so every GPU of the machine must be one the build runs on."""
    env = dict(gpus, CUDA_DEVICE_ORDER="FASTEST_FIRST")
    result = finetune(tmp_path, libraries["sass"], env, "--gpus", "1")
    assert_bad_input(result, "GPU 0 (NVIDIA H100 80GB HBM3) has compute capability 9.0",
                     "set CUDA_DEVICE_ORDER=PCI_BUS_ID")


@pytest.mark.parametrize("library, flag, visible", [("sass", "1,2", None), ("ptx", "0", None),
                                                    ("sass", "0", "2")])
def test_gpus_the_build_runs_pass_to_mxnet_own_count(libraries, gpus, tmp_path, library,
                                                     flag, visible):
    """The T4 and L4 (SASS of 7.5 and 8.0), the H100 through PTX of 8.6, and MXNet's GPU 0
    when ``CUDA_VISIBLE_DEVICES`` makes it the L4: the check passes, and MXNet's count (none,
    on this CPU build) speaks next."""
    env = dict(gpus, **({"CUDA_VISIBLE_DEVICES": visible} if visible else {}))
    result = finetune(tmp_path, libraries[library], env, "--gpus", flag)
    assert_bad_input(result, "--gpus %s: no GPU is visible to MXNet" % flag)


def test_gpu_check_script_refuses_before_it_builds_anything(libraries, gpus, tmp_path):
    env = dict(os.environ, XCEPTION_MX_FAULT="mxnet-library=" + libraries["sass"], **gpus)
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"),
                             "--gpus", "1,0", "--workdir", str(tmp_path / "work")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert_bad_input(result, "gpu_check.sh: error: --gpus 1,0: GPU 0 (NVIDIA H100 80GB HBM3) "
                     "has compute capability 9.0")
    assert not (tmp_path / "work").exists()
