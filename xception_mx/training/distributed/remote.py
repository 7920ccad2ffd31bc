"""The machines of an ``xception-launch`` job over ssh: the host file, the variables
forwarded to remote processes, and the ssh command that runs a process there under a
watchdog (remote processes die with their ssh connection)."""
import collections
import shlex
import socket

from xception_mx._threads import USER_ENVIRON
from xception_mx.errors import InputError, make_sure

PROG = "xception-launch"    # also the watchdog shell's $0, shown by ps on the remote machine
# what dmlc_tracker/ssh.py forwards to remote processes, and ps-lite's log level
FORWARDED_ENV = ("OMP_NUM_THREADS", "KMP_AFFINITY", "LD_LIBRARY_PATH", "DMLC_INTERFACE",
                 "PS_VERBOSE")
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
               "-o", "ConnectTimeout=20")
# Runs a remote command in its own process group and kills that group when the
# ssh connection (our stdin) closes: without a terminal, sshd does not signal
# the processes of a session that ends.
REMOTE_WATCHDOG = ("exec 3<&0; setsid \"$@\" </dev/null & p=$!; "
                   "( cat <&3 >/dev/null; kill -KILL -$p ) >/dev/null 2>&1 & "
                   "wait $p")

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


def remote_command(process, workdir, forwarded):
    """The shell command ssh runs on the process's host: change to ``workdir``,
    set the ``forwarded`` and ``DMLC_*`` variables, run under the watchdog."""
    env = dict(forwarded, **process.env)
    words = ["env"] + ["%s=%s" % item for item in sorted(env.items())]
    words += ["sh", "-c", REMOTE_WATCHDOG, PROG] + list(process.argv)
    return "cd %s && exec %s" % (shlex.quote(workdir), " ".join(shlex.quote(w) for w in words))


def ssh_argv(process, ssh, workdir, forwarded):
    port = ["-p", str(process.host.ssh_port)] if process.host.ssh_port else []
    return list(ssh) + list(SSH_OPTIONS) + port + [process.host.name,
                                                  remote_command(process, workdir, forwarded)]
