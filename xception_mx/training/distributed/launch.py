"""``xception-launch``: run a command as a data-parallel job on MXNet's
parameter server (ps-lite): a scheduler, servers and workers with the
``DMLC_*`` environment, on this machine (``--launcher local``) or on the
machines of a host file over ssh (``--launcher ssh --hosts FILE``).

Built on dmlc_tracker (shipped in the MXNet wheel, used by
``mxnet/tools/launch.py``), keeping what works and fixing what does not:

- kept: the protocol (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``/``PORT``,
  ``DMLC_NUM_SERVER``/``WORKER``, ``DMLC_NODE_HOST``; scheduler and servers are
  plain ``import mxnet`` processes), the host file format (``HOST[:SSH_PORT]``
  per line, an MPI ``slots=`` field ignored; names are resolved here, since
  ps-lite binds ``DMLC_NODE_HOST`` literally and fails on a name), the
  placement (servers, then workers, round-robin over the hosts; the scheduler
  on the launching machine),
  the variables forwarded to remote processes, and ``get_host_ip`` for the
  scheduler's address when ``--host`` is not given.
- fixed: its local launcher crashes on Python 3.11 (``Thread.isAlive``) and
  binds the outward address (here everything stays on ``--host``, loopback by
  default); its ssh launcher neither quotes the command nor notices a process
  that fails, and leaves remote processes running when the job ends.

What it adds: every process's output is streamed with a prefix (a worker's
rank once it has said it: ``xception-mx: rank R of N``), a process that
dies stops the whole job (ps-lite leaves the other workers blocked forever
otherwise) with a clear error, remote processes are killed when their ssh
connection closes or falls silent (``--link-timeout``: a host whose link is down), a host that
cannot run the job is refused before anything starts, and ``--timeout`` bounds the whole job.
"""
import collections
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from xception_mx.errors import InputError
from xception_mx.training.distributed.remote import (LINK_TIMEOUT, PROG, Host, check_hosts,
                                                     forwarded_env, ssh_argv)

SERVER_CODE = "import mxnet"   # with DMLC_ROLE=server/scheduler, importing MXNet runs the role
Process = collections.namedtuple("Process", "label host argv env")


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def plan(command, workers, servers, root_host, root_port, hosts=None, python=sys.executable):
    """The job's processes: the scheduler on ``root_host`` (this machine), then
    servers and workers, round-robin over ``hosts`` (all on ``root_host`` when
    there are none)."""
    base = {"DMLC_PS_ROOT_URI": root_host, "DMLC_PS_ROOT_PORT": str(root_port),
            "DMLC_NUM_SERVER": str(servers), "DMLC_NUM_WORKER": str(workers)}
    here = Host(root_host, None, root_host)
    hosts = hosts or [here]
    processes = [Process("scheduler", here, [sys.executable, "-c", SERVER_CODE],
                         dict(base, DMLC_ROLE="scheduler", DMLC_NODE_HOST=root_host))]
    for i in range(servers + workers):
        host = hosts[i % len(hosts)]
        env = dict(base, DMLC_NODE_HOST=host.address)
        if i < servers:
            processes.append(Process("server %d" % i, host, [python, "-c", SERVER_CODE],
                                     dict(env, DMLC_ROLE="server")))
        else:
            rank = i - servers
            processes.append(Process("worker %d" % rank, host, list(command),
                                     dict(env, DMLC_ROLE="worker",
                                          XCEPTION_MX_WORKER=str(rank))))
    return processes


# The line a worker of this toolkit prints once it knows its rank (devices.join_job):
# ps-lite's scheduler assigns ranks, so they need not follow the launch order.
RANK_LINE = re.compile(r"^xception-mx: rank (\d+) of \d+$")


def _stream(pipe, label, out, ranks):
    """Copy a process's output, each line prefixed with ``[label]``; a worker's
    prefix becomes ``[rank R]`` once it has said its rank."""
    for line in iter(pipe.readline, b""):
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        match = RANK_LINE.match(text)
        if match and label.startswith("worker"):
            ranks[label] = int(match.group(1))
            label = "rank %d" % ranks[label]
        out.write("[%s] %s\n" % (label, text))
        out.flush()


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


class Job:
    """Started processes, their output threads, and how to end them."""

    def __init__(self, out, err, link_timeout=LINK_TIMEOUT):
        self.out, self.err = out, err
        self.beat_every, self.last_beat = link_timeout / 5, 0.0
        self.running = []     # (Process, Popen, remote)
        self.threads = []
        self.ranks = {}       # worker label -> rank, as the workers said

    def start(self, process, argv, env, remote):
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE if remote else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
        if remote:
            os.set_blocking(popen.stdin.fileno(), False)
        thread = threading.Thread(target=_stream, args=(popen.stdout, process.label, self.out,
                                                         self.ranks), daemon=True)
        thread.start()
        self.running.append((process, popen, remote))
        self.threads.append(thread)
        print("%s: %s on %s%s, pid %d" % (PROG, process.label, process.host.name,
                                          " via ssh" if remote else "", popen.pid),
              file=self.err, flush=True)

    def name(self, label):
        """``worker 1 (rank 0)`` once the rank is known."""
        rank = self.ranks.get(label)
        return label if rank is None else "%s (rank %d)" % (label, rank)

    def beat(self):
        """A heartbeat byte to every remote process's watchdog, every link_timeout / 5 s."""
        if time.time() - self.last_beat < self.beat_every:
            return
        self.last_beat = time.time()
        for _, popen, remote in self.running:
            if remote and popen.poll() is None:
                try:
                    os.write(popen.stdin.fileno(), b"\n")
                except (BlockingIOError, BrokenPipeError, ValueError):
                    pass       # a connection that stalls or ended: the watch below sees it

    def failure(self, process, code, remote):
        """The line that says why ``process`` ended the job."""
        where = self.name(process.label) + (" on %s" % process.host.name if remote else "")
        if remote and code == 255:
            return "%s: lost the connection to %s (ssh exited with status 255: the host or " \
                   "its link went down, ssh was refused, or the command itself exited 255); " \
                   "stopping the job (restart it with --resume)" % (where, process.host.name)
        return "%s exited with status %s; stopping the job (restart it with --resume)" % (
            where, code)

    def watch(self, timeout=None):
        """Wait until every worker ended; return an error text, or ``None``."""
        started = time.time()
        while True:
            # one reading of every status, so a worker that fails between two
            # polls cannot look like the end of the job
            codes = [(process, popen.poll(), remote) for process, popen, remote in self.running]
            for process, code, remote in codes:
                if code not in (None, 0):
                    return self.failure(process, code, remote)
            if all(code is not None for process, code, _ in codes
                   if process.label.startswith("worker")):
                return None
            self.beat()
            if timeout and time.time() - started > timeout:
                return "the job ran longer than --timeout %g s; stopping it" % timeout
            time.sleep(0.2)

    def stop(self, grace):
        """Give the processes ``grace`` seconds, then kill them (remote ones by
        closing their connection, which makes the watchdog kill them)."""
        deadline = time.time() + grace
        for _, popen, _ in self.running:
            while popen.poll() is None and time.time() < deadline:
                self.beat()            # the remote ones' watchdogs keep waiting meanwhile
                time.sleep(0.1)
        for _, popen, remote in self.running:
            if remote and popen.stdin:
                try:
                    popen.stdin.close()
                except OSError:
                    pass
        deadline = time.time() + 5          # for the remote ones' watchdogs (the local
        for _, popen, remote in self.running:     # scheduler waits for no one: killed below)
            while remote and popen.poll() is None and time.time() < deadline:
                time.sleep(0.1)
        for _, popen, _ in self.running:
            if popen.poll() is None:
                try:
                    os.killpg(popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                popen.wait()
        for thread in self.threads:
            thread.join(timeout=5)


def commands(processes, over_ssh, ssh, workdir, environ, python, link_timeout=LINK_TIMEOUT):
    """``(process, argv, env, remote)`` to start each process with: the
    scheduler here, the others here (in ``environ``) or over ssh."""
    forwarded = dict(forwarded_env(), PS_VERBOSE=environ.get("PS_VERBOSE", "0"))
    for process in processes:
        if over_ssh and process.label != "scheduler":
            yield (process, ssh_argv(process, ssh, workdir or os.getcwd(), forwarded, python,
                                     link_timeout), environ, True)
        else:
            yield process, process.argv, dict(environ, **process.env), False


def dry_run(command, workers, servers, host, port, hosts, ssh, workdir, python,
            link_timeout=LINK_TIMEOUT, out=sys.stdout):
    """Print what ``launch`` would start, one line a process, and start nothing."""
    processes = plan(command, workers, servers, host, port or 0, hosts, python)
    for process, argv, _, remote in commands(processes, hosts is not None, ssh, workdir,
                                             os.environ, python, link_timeout):
        words = [] if remote else ["%s=%s" % kv for kv in sorted(process.env.items())]
        out.write("%s on %s: %s\n" % (process.label, process.host.name,
                                      " ".join(shlex.quote(w) for w in words + list(argv))))
    return 0


def launch(command, workers, servers, host="127.0.0.1", port=None, grace=30.0, timeout=None,
           hosts=None, ssh=("ssh",), workdir=None, python=sys.executable, out=sys.stdout,
           err=sys.stderr, env=None, link_timeout=LINK_TIMEOUT):
    """Run ``command`` as ``workers`` workers with ``servers`` servers, locally
    or (with ``hosts``) over ssh, after checking every host; return the job's exit status (0
    only if every process exited 0 within ``timeout``)."""
    environ = dict(env or os.environ)
    environ.setdefault("PS_VERBOSE", "0")      # ps-lite's own log level
    port = port or free_port(host)
    job = Job(out, err, link_timeout)
    processes = plan(command, workers, servers, host, port, hosts, python)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    error = "interrupted"
    try:
        if hosts is not None:
            check_hosts(processes, ssh, workdir or os.getcwd(), python, link_timeout)
        for started in commands(processes, hosts is not None, ssh, workdir, environ, python,
                                link_timeout):
            job.start(*started)
        error = job.watch(timeout)
    except (_Stop, KeyboardInterrupt):
        pass
    except OSError as exc:      # the program to start (COMMAND or --ssh) missing or not runnable
        raise InputError("cannot start %s: %s" % (exc.filename or "the command",
                                                  exc.strerror or exc))
    finally:
        job.stop(0 if error else grace)
        signal.signal(signal.SIGTERM, previous)
    if error:
        print("%s: %s" % (PROG, error), file=err, flush=True)
        return 1
    return 0
