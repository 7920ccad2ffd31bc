"""``xception-launch``: run a command as a data-parallel job on MXNet's parameter server, on
this machine or over ssh (``training.distributed.launch``)."""
import shlex
import sys

from xception_mx.commands.runner import Parser, run
from xception_mx.errors import make_sure
from xception_mx.training.distributed.launch import dry_run, launch
from xception_mx.training.distributed.remote import LINK_TIMEOUT, PROG, read_hosts


def build_parser():
    parser = Parser(prog=PROG, description="Run COMMAND as a data-parallel job on MXNet's "
                    "parameter server (scheduler + servers + workers), e.g. "
                    "xception-launch -n 2 -s 1 -- xception-finetune ... --kvstore dist_sync")
    parser.add_argument("-n", "--workers", type=int, required=True,
                        help="worker processes (each runs COMMAND)")
    parser.add_argument("-s", "--servers", type=int, default=1,
                        help="parameter-server processes")
    parser.add_argument("--launcher", choices=("local", "ssh"), default="local",
                        help="local: every process on this machine; ssh: servers and workers "
                        "round-robin over the --hosts machines, the scheduler here")
    parser.add_argument("-H", "--hosts", metavar="FILE",
                        help="host file for --launcher ssh: HOST or HOST:SSH_PORT per line")
    parser.add_argument("--host", help="address the scheduler binds and the others reach "
                        "(default: 127.0.0.1 for local, this machine's address for ssh)")
    parser.add_argument("--port", type=int, help="scheduler port (default: a free one)")
    parser.add_argument("--ssh", default="ssh", help="ssh program and options, e.g. "
                        "'ssh -i ~/.ssh/cluster' (always with BatchMode=yes)")
    parser.add_argument("--workdir", help="folder the remote commands run in (default: the "
                        "current one, which must exist on every host)")
    parser.add_argument("--python", default=sys.executable, help="Python with MXNet on the "
                        "hosts, for the servers (default: this one's path)")
    parser.add_argument("--timeout", type=float, default=0,
                        help="stop the job and exit 1 after this many seconds (0: no limit)")
    parser.add_argument("--link-timeout", type=float, default=LINK_TIMEOUT,
                        help="--launcher ssh: a host silent this many seconds (its link or "
                        "itself down) stops the job, and its processes stop themselves "
                        "(default: %(default)g)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds servers get to finish after the workers")
    parser.add_argument("--dry-run", action="store_true", help="print the command line of "
                        "every process (port 0: chosen at launch) and start nothing")
    parser.add_argument("command", nargs="+", metavar="-- COMMAND",
                        help="the worker command, after --: xception-finetune ... --kvstore "
                             "dist_sync")
    return parser


def _main(argv):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    make_sure("--" in argv or any(a in ("-h", "--help") for a in argv), "the worker command "
              "follows --, e.g. %s -n 2 -s 1 -- xception-finetune DATA --out run --kvstore "
              "dist_sync", PROG)
    args = build_parser().parse_args(argv)
    make_sure(args.workers >= 1, "-n/--workers must be >= 1, got %d", args.workers)
    make_sure(args.servers >= 1, "-s/--servers must be >= 1, got %d", args.servers)
    make_sure(args.timeout >= 0, "--timeout must be >= 0, got %g", args.timeout)
    make_sure(args.link_timeout >= 3, "--link-timeout must be >= 3 seconds, got %g",
              args.link_timeout)
    hosts = None
    if args.launcher == "ssh":
        make_sure(args.hosts, "--launcher ssh needs --hosts FILE (HOST or HOST:SSH_PORT per "
                  "line)")
        hosts = read_hosts(args.hosts)
        if not args.host:
            from dmlc_tracker.tracker import get_host_ip
            args.host = get_host_ip()
    else:
        make_sure(not args.hosts, "--hosts is for --launcher ssh")
    ssh = shlex.split(args.ssh)
    make_sure(ssh, "--ssh: expected an ssh program, got %r", args.ssh)
    host = args.host or "127.0.0.1"
    if args.dry_run:
        return dry_run(args.command, args.workers, args.servers, host, args.port, hosts, ssh,
                       args.workdir, args.python, args.link_timeout)
    return launch(args.command, args.workers, args.servers, host, args.port, args.grace,
                  args.timeout, hosts, ssh, args.workdir, args.python,
                  link_timeout=args.link_timeout)


def main(argv=None):
    return run(PROG, _main, argv)

