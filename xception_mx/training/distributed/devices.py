"""Devices and jobs: ``--gpus``/``--cpus`` to MXNet contexts, and this process's place in
a data-parallel job (parameter server, Horovod, or alone)."""
import collections

import mxnet as mx

from xception_mx.errors import InputError, make_sure, mxnet_error_text
from xception_mx.training.distributed.gpu_code import check_gpu_code

HOROVOD_GPU_BUILD = ("HOROVOD_GPU_OPERATIONS=NCCL make setup-horovod (with the CUDA toolkit "
                     "and NCCL installed; make does it where the venv's MXNet is a CUDA build)")


def parse_contexts(gpus=None, cpus=None):
    """``--gpus 0,1`` or ``--cpus N`` to MXNet contexts (default: one CPU)."""
    make_sure(not (gpus and cpus), "--gpus and --cpus exclude each other")
    if gpus:
        check_gpu_code(gpus, parse_gpu_ids(gpus))
        return [mx.gpu(g) for g in gpu_ids(gpus, visible_gpus(gpus))]
    count = int(cpus or 1)
    make_sure(count >= 1, "--cpus must be >= 1, got %d", count)
    return [mx.cpu(i) for i in range(count)]


def visible_gpus(flag):
    """How many GPUs MXNet sees; an MXNet error other than "none" is named in one line."""
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError as exc:
        raise InputError("--gpus %s: MXNet cannot count the GPUs (%s)"
                         % (flag, mxnet_error_text(exc)))


def parse_gpu_ids(flag):
    """The GPU numbers of ``--gpus`` (``0,1,2,3``), each once."""
    try:
        ids = [int(g) for g in str(flag).split(",") if g.strip() != ""]
    except ValueError:
        ids = None
    make_sure(bool(ids), "--gpus %s: expected comma-separated GPU numbers, e.g. 0,1,2,3", flag)
    twice = sorted({g for g in ids if ids.count(g) > 1})
    make_sure(not twice, "--gpus %s: GPU %s given more than once (one process per device; "
              "each GPU once)", flag, ", ".join(map(str, twice)))
    return ids


def gpu_ids(flag, available):
    """The GPU numbers of ``--gpus`` (``0,1,2,3``): each a visible GPU, each once."""
    ids = parse_gpu_ids(flag)
    make_sure(available > 0, "--gpus %s: no GPU is visible to MXNet (install mxnet-cu112 or "
              "mxnet-cu117 1.9.1 on a GPU machine, or use --cpus N)", flag)
    bad = [g for g in ids if not 0 <= g < available]
    make_sure(not bad, "--gpus %s: only %d GPUs visible (0..%d)", flag, available, available - 1)
    return ids


def horovod_contexts(contexts, local_rank, gpus_flag):
    """With ``--gpus``, a Horovod process takes the GPU at its local rank among those listed
    (one device per process, as on one GPU each); CPU processes keep their context."""
    if not gpus_flag:
        return contexts
    make_sure(local_rank < len(contexts), "--gpus %s: %d GPU(s) listed for more Horovod "
              "processes on this machine (local rank %d); list one GPU per process",
              gpus_flag, len(contexts), local_rank)
    return [contexts[local_rank]]


def check_horovod_gpus(hvd, gpus_flag):
    """Refuse GPUs under a Horovod built without CUDA: it would send GPU arrays down its
    CPU path and fail at the first broadcast."""
    make_sure(not gpus_flag or hvd.cuda_built(), "--gpus %s --kvstore horovod: this Horovod "
              "was built without GPU support (horovod.mxnet.cuda_built() is false); rebuild "
              "it with %s", gpus_flag, HOROVOD_GPU_BUILD)


HOROVOD = "horovod"
Job = collections.namedtuple("Job", "kvstore rank workers local_rank")


def import_horovod():
    try:
        import horovod.mxnet as hvd
    except ImportError as exc:
        raise InputError("--kvstore horovod: Horovod is not installed (make setup-horovod builds "
                         "it against this MXNet; %s)" % exc)
    return hvd


def join_job(kvstore):
    """This process's place in a data-parallel job: ``dist_*`` joins the
    parameter server, ``horovod`` Horovod's ring; others make a one-process job."""
    if kvstore.startswith("dist"):
        store = mx.kv.create(kvstore)
        job = Job(store, store.rank, store.num_workers, 0)
    elif kvstore == HOROVOD:
        hvd = import_horovod()
        hvd.init()
        job = Job(HOROVOD, hvd.rank(), hvd.size(), hvd.local_rank())
    else:
        return Job(kvstore, 0, 1, 0)
    print("xception-mx: rank %d of %d" % (job.rank, job.workers), flush=True)  # launch.RANK_LINE
    return job


def is_distributed(kvstore):
    return not isinstance(kvstore, str) and kvstore.type.startswith("dist")
