"""The machines of an ``xception-launch`` job over ssh: the host file, the variables
forwarded to remote processes, and the ssh command that runs a process there under a
watchdog (remote processes die with their ssh connection)."""
import collections
import os
import shlex
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

from xception_mx._threads import USER_ENVIRON
from xception_mx.errors import InputError, make_sure

PROG = "xception-launch"
# what dmlc_tracker/ssh.py forwards to remote processes, and ps-lite's log level
FORWARDED_ENV = ("OMP_NUM_THREADS", "KMP_AFFINITY", "LD_LIBRARY_PATH", "DMLC_INTERFACE",
                 "PS_VERBOSE")
LINK_TIMEOUT = 15.0          # seconds a host may stay silent before its processes are stopped
# Runs a remote command in its own session and kills that session when the launcher goes
# silent: the ssh connection (our stdin) closes, or no heartbeat byte arrives for TIMEOUT
# seconds (a link down: sshd notices no lost peer for hours).  Run by the hosts' --python.
REMOTE_WATCHDOG = """import os, select, signal, subprocess, sys, threading
timeout = float(sys.argv[1])
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, start_new_session=True)
def end_session():
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass
def watch():
    while select.select([0], [], [], timeout)[0] and os.read(0, 4096):
        pass
    end_session()
threading.Thread(target=watch, daemon=True).start()
code = child.wait()
end_session()                    # what the command left behind in its session
sys.exit(code if code >= 0 else 128 - code)"""


def ssh_options(link_timeout=LINK_TIMEOUT):
    """ssh's options for every connection: never a prompt, and a connection whose peer is
    silent for 3 whole seconds of ``link_timeout`` / 3 (ssh takes no fractions) ends, within
    one more interval (exit status 255)."""
    return ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "ConnectTimeout=20",
            "-o", "ServerAliveInterval=%d" % max(1, int(link_timeout // 3)),
            "-o", "ServerAliveCountMax=3")


Host = collections.namedtuple("Host", "name ssh_port address")


def parse_hosts(text, source="--hosts"):
    """``HOST[:SSH_PORT]`` per line (``#`` comments, blank lines and an MPI
    ``slots=N`` field allowed, as dmlc_tracker reads it) to ``Host`` tuples."""
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].split("slots=", 1)[0].strip()
        if not line:
            continue
        make_sure(len(line.split()) == 1, "%s line %d: expected HOST or HOST:SSH_PORT, got %r",
                  source, number, line)
        name, _, port = line.partition(":")
        if port:
            make_sure(port.isdigit() and 0 < int(port) < 65536, "%s line %d: ssh port %r is "
                      "not a number in 1..65535", source, number, port)
        try:    # ps-lite binds DMLC_NODE_HOST literally: an address, not a name
            address = socket.gethostbyname(name)
        except (OSError, UnicodeError):
            raise InputError("%s line %d: cannot resolve host %r" % (source, number, name))
        hosts.append(Host(name, int(port) if port else None, address))
    make_sure(hosts, "%s: no hosts listed (expected HOST or HOST:SSH_PORT per line)", source)
    return hosts


def read_hosts(path):
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("--hosts %s: cannot read it (%s)" % (path, getattr(exc, "strerror",
                                                                              None) or exc))
    return parse_hosts(text, "--hosts %s" % path)


def forwarded_env(environ=USER_ENVIRON):
    """The variables of ``FORWARDED_ENV`` that the user has set (not this
    machine's defaults, such as our OMP_NUM_THREADS for its cores)."""
    return {k: environ[k] for k in FORWARDED_ENV if k in environ}


def remote_command(process, workdir, forwarded, python, link_timeout=LINK_TIMEOUT):
    """The shell command ssh runs on the process's host: change to ``workdir``,
    set the ``forwarded`` and ``DMLC_*`` variables, run under the watchdog."""
    env = dict(forwarded, **process.env)
    words = ["env"] + ["%s=%s" % item for item in sorted(env.items())]
    # exec of the source's repr: one line, for the remote shell and --dry-run alike
    words += [python, "-c", "exec(%r)" % REMOTE_WATCHDOG, "%g" % link_timeout]
    words += list(process.argv)
    return "cd %s && exec %s" % (shlex.quote(workdir), " ".join(shlex.quote(w) for w in words))


def ssh_to(host, ssh, link_timeout=LINK_TIMEOUT):
    """The ssh command line up to the remote command, for ``host``."""
    port = ["-p", str(host.ssh_port)] if host.ssh_port else []
    return list(ssh) + list(ssh_options(link_timeout)) + port + [host.name]


def ssh_argv(process, ssh, workdir, forwarded, python, link_timeout=LINK_TIMEOUT):
    return ssh_to(process.host, ssh, link_timeout) + [
        remote_command(process, workdir, forwarded, python, link_timeout)]


# What a host needs before any process starts there, run by sh whatever the login shell;
# the exit status says what it lacks.
HOST_CHECK = "cd %s 2>/dev/null || exit 3; %s || exit 4; %s || exit 5"
HOST_LACKS = {
    3: "no folder %(workdir)s (the processes run in --workdir, by default the current "
       "folder: every host needs it)",
    4: "no Python at %(python)s (--python; the venv must be at the same path on every host)",
    5: "cannot run %(program)s there (the worker command: not found or not executable)",
}
CHECK_SECONDS = 60


def runnable_test(program):
    """A shell test that ``program`` runs there: a path must be an executable file, a bare
    name must be found on PATH."""
    quoted = shlex.quote(program)
    if "/" in program:
        return "{ [ -f %s ] && [ -x %s ]; }" % (quoted, quoted)
    return "command -v %s >/dev/null 2>&1" % quoted


def worker_program(argv):
    """The program a worker command runs: past ``env`` and its ``NAME=VALUE`` words."""
    words = list(argv)
    if words and os.path.basename(words[0]) == "env":
        rest = words[1:]
        while rest and "=" in rest[0] and not rest[0].startswith("-"):
            rest.pop(0)
        return rest[0] if rest else words[0]
    return words[0]


def host_problem(host, ssh, workdir, python, program, link_timeout=LINK_TIMEOUT):
    """What keeps ``host`` from running the job's processes (``program``: the worker
    command, ``""`` for a host with servers only), or ``None``.  An ssh that cannot start
    raises OSError."""
    check = HOST_CHECK % (shlex.quote(workdir), runnable_test(python),
                          runnable_test(program) if program else "true")
    argv = ssh_to(host, ssh, link_timeout) + ["sh -c " + shlex.quote(check)]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CHECK_SECONDS)
    except subprocess.TimeoutExpired:
        return "ssh gave no answer within %d s" % CHECK_SECONDS
    if done.returncode == 0:
        return None
    if done.returncode in HOST_LACKS:
        return HOST_LACKS[done.returncode] % {"workdir": workdir, "python": python,
                                               "program": program}
    said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return "ssh failed with status %d (%s)" % (done.returncode, said[-1] if said else
                                                "it said nothing")


def check_hosts(processes, ssh, workdir, python, link_timeout=LINK_TIMEOUT):
    """Before anything starts: every host of ``processes`` (but the scheduler's, this
    machine) answers over ssh and has the folder, the Python and the worker command; else an
    InputError naming the first host that does not, in the host file's order."""
    programs = {}
    for process in processes:
        if process.label != "scheduler":
            worker = process.label.startswith("worker")
            programs[process.host] = programs.get(process.host) or (
                worker_program(process.argv) if worker else "")
    hosts = list(programs)
    with ThreadPoolExecutor(len(hosts)) as pool:
        problems = list(pool.map(lambda h: host_problem(h, ssh, workdir, python, programs[h],
                                                        link_timeout), hosts))
    for host, problem in zip(hosts, problems):
        make_sure(problem is None, "host %s: %s; nothing started", host.name, problem)
