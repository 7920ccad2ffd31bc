"""Thread settings that must be in place before MXNet is imported.

MXNet 1.9.1 runs its CPU operators on ``cores - 1`` OpenMP threads unless
``OMP_NUM_THREADS`` says otherwise; on a 2-core machine that is one thread and
half the speed.  Every entry point of this toolkit therefore sets
``OMP_NUM_THREADS`` to the number of cores this process may run on, unless the
user has set it.
"""
import os

THREAD_ENV = "OMP_NUM_THREADS"
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
        environ[THREAD_ENV] = str(available_cores())
    return int(environ[THREAD_ENV])
