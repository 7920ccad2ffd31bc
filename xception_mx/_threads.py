"""Thread settings that must be in place before MXNet is imported.

MXNet 1.9.1 runs its CPU operators on ``cores - 1`` OpenMP threads unless
``OMP_NUM_THREADS`` says otherwise; on a 2-core machine that is one thread and
half the speed.  Every entry point of this toolkit therefore sets
``OMP_NUM_THREADS`` to the number of cores this process may run on, unless the
user has set it.
"""
import os
import sys
import warnings

THREAD_ENV = "OMP_NUM_THREADS"
ENGINE_ENV = "MXNET_ENGINE_TYPE"
# The commands that only run networks forward.  MXNet's default engine hands each operator to
# a worker thread; its NaiveEngine runs it in the calling thread, which is faster on the fast
# paths, most at batch 1 (the figures: BENCHMARKS.md and bench/NOTES.md).
# Training keeps the default: it overlaps devices, Horovod's collectives and data loading.
SERVING_COMMANDS = ("xception-predict", "xception-evaluate")
# The environment as the user gave it, before this package or MXNet (which
# extends LD_LIBRARY_PATH for OpenCV) changed anything: what xception-launch
# forwards to other machines.
USER_ENVIRON = dict(os.environ)


def available_cores():
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def configure_threads(environ=os.environ):
    """Set ``OMP_NUM_THREADS`` to all available cores unless already set (and
    silence MXNet's "Subgraph backend MKLDNN is activated" log line).

    Returns the thread count in force.  Has an effect only before MXNet's
    first import in this process.
    """
    environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    if not environ.get(THREAD_ENV):
        if "mxnet" in sys.modules:
            warn_mxnet_came_first()
        environ[THREAD_ENV] = str(available_cores())
    return int(environ[THREAD_ENV])


def configure_engine(command=None, environ=os.environ):
    """MXNet's NaiveEngine for the serving commands (``command``: this process's, from
    ``sys.argv[0]``) unless ``MXNET_ENGINE_TYPE`` is set; returns the engine in force.  Has an
    effect only before MXNet's first import in this process."""
    if command is None:
        command = sys.argv[0] if sys.argv else ""
    if (os.path.basename(command) in SERVING_COMMANDS and not environ.get(ENGINE_ENV)
            and "mxnet" not in sys.modules):
        environ[ENGINE_ENV] = "NaiveEngine"
        _start_engine_quietly()
    return environ.get(ENGINE_ENV) or "ThreadedEnginePerDevice"


def _start_engine_quietly():
    """Start MXNet's engine now, its one log line ("MXNet start using engine: ...", printed
    whenever the engine is chosen by name) kept off stderr: bad input gets one line there."""
    import mxnet as mx
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        mx.nd.zeros((1,)).wait_to_read()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def warn_mxnet_came_first():
    """Say once that MXNet, imported first, keeps cores - 1 threads, and what fixes it.

    Nothing restores the count afterwards: MXNet's ``MXSetNumOMPThreads`` sets the calling
    thread's OpenMP count only, not its engine's worker threads, where the operators run
    (a convolution runs as slowly after the call as before it; only ``OMP_NUM_THREADS`` set
    before the import speeds it up)."""
    cores = available_cores()
    if cores > 1:
        warnings.warn("MXNet was imported before xception_mx with %s unset: it runs its "
                      "operators on %d of %d cores (it reads the variable once, when it is "
                      "imported). Import xception_mx first, or set %s=%d before importing "
                      "mxnet." % (THREAD_ENV, cores - 1, cores, THREAD_ENV, cores),
                      RuntimeWarning, stacklevel=3)
