"""The cluster of namespace hosts the multi-host tests run on (scripts/netns_cluster.sh):
whether this machine can make one, bringing one up for a test and down after it (one at a
time on this machine: the tests of two pytest workers take turns), what it left behind."""
import contextlib
import fcntl
import os
import subprocess
import sys

import pytest

from conftest import ROOT, process_alive

SCRIPT = os.path.join(ROOT, "scripts", "netns_cluster.sh")
LOCK = "/tmp/xception-mx-cluster.lock"
GATEWAY = "198.18.0.1"            # this machine, as the hosts reach it


def why_no_namespaces():
    """Why this machine cannot make the cluster's namespaces, or None."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if os.geteuid() != 0:
        return "not root: network namespaces need root (run the suite as root, as CI does)"
    probe = subprocess.run(["ip", "netns", "add", "xmx-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "cannot make a network namespace: %s" % probe.stderr.strip()
    subprocess.run(["ip", "netns", "del", "xmx-probe"], check=True)
    return None


WHY = why_no_namespaces()
needs_namespaces = pytest.mark.skipif(WHY is not None, reason=str(WHY))


def sshd_or_fail():
    """Under CI=true a machine that can make namespaces must run these tests: a missing sshd
    fails them there, and skips them elsewhere."""
    if not os.path.exists("/usr/sbin/sshd"):
        message = "no openssh-server (/usr/sbin/sshd): make setup-netns installs it"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)


def cluster(*args, env=None):
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **(env or {})))


def shape(*netem):
    """Every link shaped as ``tc netem NETEM...`` (or by scripts/link_emulator.py); a machine
    with neither sch_netem nor packet sockets that keep virtio-net headers skips the test,
    saying so (any other failure fails it)."""
    shaped = cluster("shape", *netem)
    if "cannot shape links on this machine" in shaped.stderr:
        pytest.skip(shaped.stderr.strip())
    assert shaped.returncode == 0, shaped.stderr
    return shaped


@contextlib.contextmanager
def one_cluster_at_a_time():
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def cluster_up(directory, hosts=3):
    """``hosts`` hosts up for the block, down after it; nothing may be left."""
    with one_cluster_at_a_time():
        started = cluster("up", hosts, directory)
        assert started.returncode == 0, started.stderr
        try:
            yield directory
        finally:
            stopped = cluster("down", directory)
        assert stopped.returncode == 0, stopped.stderr
        assert left_over(directory) == []


def left_over(directory):
    """What a cluster left on this machine: namespaces and their /etc/netns files, its bridge
    and veths, its sshds, its link emulator."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    sshd = subprocess.run(["pgrep", "-af", "sshd -f %s" % directory], capture_output=True,
                          text=True).stdout
    emulator = subprocess.run(["pgrep", "-af", "link_emulator.py"], capture_output=True,
                              text=True).stdout
    names = os.listdir("/etc/netns") if os.path.isdir("/etc/netns") else []
    return ([line for line in namespaces.splitlines() if line.startswith("xmx-h")] +
            ["/etc/netns/" + name for name in names if name.startswith("xmx-h")] +
            [line.split(":")[1].strip() for line in links.splitlines() if ": xmx-" in line] +
            sshd.splitlines() + emulator.splitlines())


def running_on(host):
    """The live processes of host ``host`` (1, 2, ...) but its sshd's: ``[(pid, command)]``.
    (A session whose client vanished with its link stays in sshd, running nothing, until the
    connection times out: TCP keepalive, or sshd's ClientAliveInterval where set.)"""
    pids = subprocess.run(["ip", "netns", "pids", "xmx-h%d" % host], capture_output=True,
                          text=True).stdout.split()
    found = []
    for pid in pids:
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                command = f.read().replace(b"\0", b" ").decode().strip()
        except FileNotFoundError:
            continue
        if process_alive(pid) and not command.startswith(("sshd:", "/usr/sbin/sshd")):
            found.append((pid, command[:120]))
    return found


def interface_bytes(host):
    """Bytes through host ``host``'s link so far, both ways (its bridge side's counters)."""
    total = 0
    for way in ("rx_bytes", "tx_bytes"):
        with open("/sys/class/net/xmx-v%d/statistics/%s" % (host, way)) as f:
            total += int(f.read())
    return total


def ssh(directory, host, command, namespace=None):
    argv = ["ssh", "-F", str(directory / "ssh_config"), host, command]
    if namespace:
        argv = ["ip", "netns", "exec", namespace] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)
