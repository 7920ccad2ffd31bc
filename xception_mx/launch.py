"""``xception-launch``: run a command as a data-parallel job on MXNet's
parameter server (ps-lite): a scheduler, servers and workers with the
``DMLC_*`` environment.

Why not ``mxnet/tools/launch.py``: its ``--launcher local`` (dmlc_tracker)
crashes on Python 3.11 (``Thread.isAlive``) and binds the outward address;
ps-lite also needs ``DMLC_NODE_HOST`` to stay on loopback.  What this launcher
takes from dmlc_tracker is the protocol: the same ``DMLC_ROLE``,
``DMLC_PS_ROOT_URI``/``PORT``, ``DMLC_NUM_SERVER``/``WORKER`` variables, and
servers/scheduler that are plain ``import mxnet`` processes.

What it adds: every process's output is streamed with a rank prefix, and a
process that dies makes the whole job stop (ps-lite leaves the other workers
blocked forever otherwise) with a clear error within ``--grace`` seconds.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .cli import Parser, run
from .errors import make_sure

PROG = "xception-launch"
SERVER_CODE = "import mxnet"   # with DMLC_ROLE=server/scheduler, importing MXNet runs the role


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _stream(process, label, out):
    for line in iter(process.stdout.readline, b""):
        out.write("[%s] %s" % (label, line.decode("utf-8", "replace")))
        out.flush()


def launch(command, workers, servers, host="127.0.0.1", port=None, grace=30.0,
           out=sys.stdout, env=None):
    """Run ``command`` as ``workers`` workers with ``servers`` servers; return
    the job's exit status (0 only if every worker exited 0)."""
    port = port or free_port(host)
    base = dict(env or os.environ, DMLC_PS_ROOT_URI=host, DMLC_PS_ROOT_PORT=str(port),
                DMLC_NUM_SERVER=str(servers), DMLC_NUM_WORKER=str(workers),
                DMLC_NODE_HOST=host, PS_VERBOSE=os.environ.get("PS_VERBOSE", "0"))
    roles = [("scheduler", [sys.executable, "-c", SERVER_CODE], {})]
    roles += [("server %d" % i, [sys.executable, "-c", SERVER_CODE], {}) for i in range(servers)]
    roles += [("worker %d" % i, list(command), {"XCEPTION_MX_WORKER": str(i)})
              for i in range(workers)]
    processes = []
    for label, argv, extra in roles:
        role = label.split()[0]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=dict(base, DMLC_ROLE=role, **extra),
                                   start_new_session=True)
        threading.Thread(target=_stream, args=(process, label, out), daemon=True).start()
        processes.append((label, process))
    worker_procs = [(l, p) for l, p in processes if l.startswith("worker")]
    status = 0
    try:
        while True:
            failed = [(l, p.returncode) for l, p in processes
                      if p.poll() is not None and p.returncode != 0]
            if failed:
                label, code = failed[0]
                print("%s: %s exited with status %s; stopping the job (restart it with "
                      "--resume)" % (PROG, label, code), file=sys.stderr)
                status = 1
                break
            if all(p.poll() is not None for _, p in worker_procs):
                break
            time.sleep(0.2)
    finally:
        deadline = time.time() + (grace if status == 0 else 0)
        for _, process in processes:
            while process.poll() is None and time.time() < deadline:
                time.sleep(0.1)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return status


def build_parser():
    parser = Parser(prog=PROG, description="Run COMMAND as a data-parallel job on MXNet's "
                    "parameter server (scheduler + servers + workers), e.g. "
                    "xception-launch -n 2 -s 1 -- xception-finetune ... --kvstore dist_sync")
    parser.add_argument("-n", "--workers", type=int, required=True)
    parser.add_argument("-s", "--servers", type=int, default=1)
    parser.add_argument("--launcher", choices=("local",), default="local",
                        help="local: every process on this machine, on loopback")
    parser.add_argument("--host", default="127.0.0.1", help="address the scheduler binds")
    parser.add_argument("--port", type=int, help="scheduler port (default: a free one)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds servers get to finish after the workers")
    parser.add_argument("command", nargs="+", metavar="-- COMMAND")
    return parser


def _main(argv):
    args = build_parser().parse_args(argv)
    make_sure(args.workers >= 1, "-n/--workers must be >= 1, got %d", args.workers)
    make_sure(args.servers >= 1, "-s/--servers must be >= 1, got %d", args.servers)
    return launch(args.command, args.workers, args.servers, args.host, args.port, args.grace)


def main(argv=None):
    return run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
