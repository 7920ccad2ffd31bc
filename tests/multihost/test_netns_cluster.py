"""scripts/netns_cluster.sh makes hosts of network namespaces: each has its own address in
198.18.0.0/15 and its own sshd with keys made for the run, reaches the others and this
machine's venv at its own path, and `down` leaves no namespace, bridge, sshd or process;
a failed `up` takes down what it made.  Needs root: elsewhere the tests are skipped, saying
so, but under CI=true a machine that can make namespaces must run them (no sshd fails)."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "netns_cluster.sh")
VENV = sys.prefix


def why_no_namespaces():
    """Why this machine cannot make the cluster's namespaces, or None."""
    if os.geteuid() != 0:
        return "not root: network namespaces need root (run the suite as root, as CI does)"
    probe = subprocess.run(["ip", "netns", "add", "xmx-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "cannot make a network namespace: %s" % probe.stderr.strip()
    subprocess.run(["ip", "netns", "del", "xmx-probe"], check=True)
    return None


WHY = why_no_namespaces() if sys.platform.startswith("linux") else "not Linux"
pytestmark = pytest.mark.skipif(WHY is not None, reason=str(WHY))


@pytest.fixture(scope="module", autouse=True)
def sshd_installed():
    if not os.path.exists("/usr/sbin/sshd"):
        pytest.fail("openssh-server is not installed: make setup-netns installs it") \
            if os.environ.get("CI") == "true" else \
            pytest.skip("no openssh-server (/usr/sbin/sshd): make setup-netns installs it")


def cluster(*args, env=None):
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **(env or {})))


def left_over(directory):
    """What a cluster left on this machine: namespaces, its bridge and veths, its sshds."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    sshd = subprocess.run(["pgrep", "-af", "sshd -f %s" % directory], capture_output=True,
                          text=True).stdout
    return ([line for line in namespaces.splitlines() if line.startswith("xmx-h")] +
            [line.split(":")[1].strip() for line in links.splitlines() if ": xmx-" in line] +
            sshd.splitlines())


def ssh(directory, host, command, namespace=None):
    argv = ["ssh", "-F", str(directory / "ssh_config"), host, command]
    if namespace:
        argv = ["ip", "netns", "exec", namespace] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_three_hosts_each_with_its_address_and_sshd_and_down_leaves_nothing(tmp_path):
    result = cluster("up", 3, tmp_path)
    try:
        assert result.returncode == 0, result.stderr
        hosts = (tmp_path / "hosts").read_text().split()
        assert hosts == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
        for host in hosts:                      # real ssh, the host's own address, the venv
            answer = ssh(tmp_path, host, "hostname -I; %s/bin/python -c "
                         "'import sys; print(sys.prefix)'" % VENV)
            assert answer.returncode == 0, answer.stderr
            assert answer.stdout.split() == [host, VENV]
        across = ssh(tmp_path, hosts[1], "hostname -I", namespace="xmx-h1")   # host to host
        assert across.returncode == 0 and across.stdout.split() == [hosts[1]], across.stderr
        ssh(tmp_path, hosts[2], "nohup sleep 600 >/dev/null 2>&1 &")
        running = subprocess.run(["ip", "netns", "pids", "xmx-h3"], capture_output=True,
                                 text=True).stdout.split()
        assert len(running) >= 2                # its sshd and the sleep
        assert len(left_over(tmp_path)) == 3 + 1 + 3 + 3
    finally:
        down = cluster("down", tmp_path)
    assert down.returncode == 0, down.stderr
    assert left_over(tmp_path) == []
    assert not [pid for pid in running if alive(pid)]


def alive(pid):
    """Whether process ``pid`` runs (a zombie no one reaped, in a container whose first
    process reaps none, does not)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_second_up_is_refused_and_the_first_cluster_kept(tmp_path):
    assert cluster("up", 1, tmp_path).returncode == 0
    try:
        again = cluster("up", 2, tmp_path / "other")
        assert again.returncode == 2
        assert again.stderr.strip() == ("netns_cluster.sh: a cluster is up already: "
                                        "scripts/netns_cluster.sh down first")
        assert ssh(tmp_path, "198.18.0.11", "true").returncode == 0
    finally:
        cluster("down", tmp_path)
    assert left_over(tmp_path) == []


def test_a_failed_up_takes_down_what_it_made(tmp_path):
    result = cluster("up", 3, tmp_path, env={"NETNS_CLUSTER_FAULT": "after-host-2"})
    assert result.returncode != 0
    assert "fault injected after host 2" in result.stderr
    assert left_over(tmp_path) == []


@pytest.mark.parametrize("args, says", [
    (["up", "x"], "up N: N must be a number of hosts, got 'x'"),
    (["up", "0"], "up N: N must be 1 to 200, got 0"),
    (["start"], "usage: scripts/netns_cluster.sh up [N] [DIR] | down [DIR]"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, says):
    result = cluster(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == "netns_cluster.sh: " + says
