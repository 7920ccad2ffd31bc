"""Whether the installed MXNet has code for the GPUs ``--gpus`` names, asked before MXNet
touches them.

An MXNet build carries its GPU code in ``libmxnet.so``'s ``.nv_fatbin`` section: machine code
(SASS) for some compute capabilities, and perhaps PTX, which the driver compiles for newer
GPUs.  By NVIDIA's compatibility rules a GPU of compute capability X.Y runs the build when
one SASS entry is for X.y with y <= Y, or one PTX entry is for a capability <= X.Y
(``runs_on``).  A GPU it cannot run fails at MXNet's first kernel ("no kernel image is
available for execution on the device"); here it is refused in one line that names the
device, the build's code and what runs there.  The device's capability comes from
``nvidia-smi``; without it the check is left to MXNet.
"""
import os
import struct
import subprocess

from elftools.elf.elffile import ELFFile

from xception_mx.errors import InputError, make_sure
from xception_mx.faults import injected

FATBIN_SECTION = ".nv_fatbin"
FATBIN_MAGIC = 0xBA55ED50
CONTAINER = struct.Struct("<IHHQ")              # magic, version, header size, entries' size
ENTRY = struct.Struct("<HHIQIIHHI")            # kind, _, header size, payload size, ..., arch
KINDS = {1: "ptx", 2: "sm"}
NVIDIA_SMI = ["nvidia-smi", "--query-gpu=index,name,compute_cap", "--format=csv,noheader"]
WHAT_RUNS = {(9, 0): "NVIDIA's MXNet containers 24.05 and 24.06 (nvcr.io/nvidia/mxnet), or "
                     "MXNet 1.9.1 built from source with CUDA 11.8 or newer and "
                     "MXNET_CUDA_ARCH=9.0"}
ANY_NEWER = ("MXNet 1.9.1 built from source with a CUDA that knows compute capability %d.%d "
             "and MXNET_CUDA_ARCH=%d.%d")
CPU_BUILD = ("install mxnet-cu112 or mxnet-cu117 1.9.1 (GPUs of compute capability 5.0 to "
             "8.9; docs/install.md lists each build's), or use --cpus N")


def fatbin_entries(path):
    """``{("sm" or "ptx", arch)}`` of the GPU code in a shared library (``arch`` 75 for 7.5),
    read from the entry headers of its ``.nv_fatbin`` containers; empty for a CPU build."""
    found = set()
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(FATBIN_SECTION)
        if section is None:
            return found
        offset, end = section["sh_offset"], section["sh_offset"] + section["sh_size"]
        while offset + CONTAINER.size <= end:
            f.seek(offset)
            magic, _, header, size = CONTAINER.unpack(f.read(CONTAINER.size))
            if magic != FATBIN_MAGIC:            # padding between containers
                offset += 8
                continue
            entry, stop = offset + header, min(offset + header + size, end)
            if stop <= offset:                   # a damaged header: read no further
                break
            while entry + ENTRY.size <= stop:
                f.seek(entry)
                kind, _, entry_header, payload, _, _, _, _, arch = ENTRY.unpack(
                    f.read(ENTRY.size))
                if kind in KINDS:
                    found.add((KINDS[kind], arch))
                if entry_header < ENTRY.size:
                    break
                entry += entry_header + payload
            offset = stop
    return found


def capability(arch):
    """``75`` -> ``(7, 5)``; ``120`` -> ``(12, 0)``."""
    return divmod(int(arch), 10)


def runs_on(entries, device):
    """Whether a GPU of compute capability ``device`` (``(major, minor)``) runs this code:
    SASS of its major version and a minor no higher, or PTX of a capability no higher."""
    for kind, arch in entries:
        major, minor = capability(arch)
        if kind == "sm" and major == device[0] and minor <= device[1]:
            return True
        if kind == "ptx" and (major, minor) <= tuple(device):
            return True
    return False


def describe(entries):
    """``sm_35, sm_50, ...; PTX for 8.6`` (``no PTX``)."""
    sass = ["sm_%d" % a for k, a in sorted(entries) if k == "sm"]
    ptx = ["%d.%d" % capability(a) for k, a in sorted(entries) if k == "ptx"]
    return "machine code for %s; %s" % (", ".join(sass) or "none",
                                        "PTX for " + ", ".join(ptx) if ptx else "no PTX")


def what_runs(device):
    return WHAT_RUNS.get(tuple(device), ANY_NEWER % (tuple(device) * 2))


def nvidia_smi_gpus():
    """``[(index, name, (major, minor))]`` of every GPU ``nvidia-smi`` lists; ``None`` when it
    is missing or fails (a driver too old for ``compute_cap``, say)."""
    try:
        out = subprocess.run(NVIDIA_SMI, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    gpus = []
    for line in out.stdout.strip().splitlines():
        try:
            index, rest = line.split(",", 1)
            name, cc = rest.rsplit(",", 1)
            major, minor = cc.strip().split(".")
            gpus.append((int(index), name.strip(), (int(major), int(minor))))
        except ValueError:
            return None
    return gpus


def physical_gpus(ids):
    """The ``nvidia-smi`` indices of MXNet's GPU numbers ``ids`` under
    ``CUDA_VISIBLE_DEVICES``; ``None`` (every GPU is checked) unless
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` numbers them as ``nvidia-smi`` does (CUDA's default
    puts the fastest first), or when the visible devices are named otherwise."""
    if os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(ids)
    try:
        order = [int(v) for v in visible.split(",") if v.strip()]
    except ValueError:                  # UUIDs or MIG names: check every GPU
        return None
    return [order[i] for i in ids if i < len(order)]


def mxnet_library():
    """The ``libmxnet.so`` this process loads (``XCEPTION_MX_FAULT=mxnet-library=PATH``: a
    test's stand-in)."""
    import mxnet.libinfo
    return injected("mxnet-library") or mxnet.libinfo.find_lib_path()[0]


def check_gpu_code(flag, ids):
    """Refuse ``--gpus FLAG`` (MXNet's GPU numbers ``ids``) in one line when the installed
    MXNet has no GPU code, or none a listed GPU runs."""
    library = mxnet_library()
    entries = fatbin_entries(library)
    make_sure(bool(entries), "--gpus %s: the installed MXNet (%s) is a CPU build, with no "
              "GPU code; %s", flag, library, CPU_BUILD)
    gpus, wanted = nvidia_smi_gpus(), physical_gpus(ids)
    for index, name, device in gpus or []:
        if (wanted is None or index in wanted) and not runs_on(entries, device):
            raise InputError(
                "--gpus %s: GPU %d (%s) has compute capability %d.%d, which the installed "
                "MXNet (%s: %s) cannot run; what runs there: %s%s"
                % (flag, index, name, device[0], device[1], library, describe(entries),
                   what_runs(device), "" if wanted is not None else
                   " (every GPU is checked: set CUDA_DEVICE_ORDER=PCI_BUS_ID to number them as "
                   "nvidia-smi does and check the listed ones only)"))
