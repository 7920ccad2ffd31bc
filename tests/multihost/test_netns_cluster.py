"""scripts/netns_cluster.sh makes hosts of network namespaces: each has its own address in
198.18.0.0/15 and its own sshd with keys made for the run, reaches the others and this
machine's venv at its own path, and `down` leaves no namespace, bridge, sshd or process;
a failed `up` takes down what it made.  Needs root: elsewhere the tests are skipped, saying
so, but under CI=true a machine that can make namespaces must run them (no sshd fails)."""
import subprocess
import sys

import pytest

from conftest import process_alive
from netns import (cluster, left_over, needs_namespaces, one_cluster_at_a_time, shape, ssh,
                   sshd_or_fail)

VENV = sys.prefix
pytestmark = needs_namespaces


@pytest.fixture(autouse=True)
def alone_on_this_machine():
    sshd_or_fail()
    with one_cluster_at_a_time():
        yield


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
        assert len(left_over(tmp_path)) == 3 + 3 + 1 + 3 + 3   # netns, hosts files, links, sshd
    finally:
        down = cluster("down", tmp_path)
    assert down.returncode == 0, down.stderr
    assert left_over(tmp_path) == []
    assert not [pid for pid in running if process_alive(pid)]


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


def connect_seconds(namespace, address):
    """Seconds a TCP connection from host ``namespace`` to ``address``'s sshd takes, or None
    when none is made within 3 s."""
    done = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c",
                           "import socket, time; t = time.monotonic(); socket.create_connection("
                           "(%r, 22), timeout=3); print(time.monotonic() - t)" % address],
                          capture_output=True, text=True)
    return float(done.stdout) if done.returncode == 0 else None


def test_shaped_links_delay_and_drop_and_shape_off_or_down_undoes_it(tmp_path):
    assert cluster("up", 2, tmp_path).returncode == 0
    try:
        base = sorted(left_over(tmp_path))
        shape("loss", "100%")
        assert connect_seconds("xmx-h1", "198.18.0.12") is None      # every frame dropped
        shape("delay", "50ms")
        # host 1 to host 2 crosses both hosts' links: 100 ms each way, a round trip at least
        delayed = connect_seconds("xmx-h1", "198.18.0.12")
        assert delayed is not None and delayed >= 0.2, delayed
        assert cluster("shape", "off").returncode == 0
        assert sorted(left_over(tmp_path)) == base           # no emulator, no extra link
        assert connect_seconds("xmx-h1", "198.18.0.12") is not None
        shape("delay", "50ms", "loss", "1%")
        assert cluster("link", 2, "down").returncode == 0
        assert cluster("link", 2, "up").returncode == 0
        back = connect_seconds("xmx-h1", "198.18.0.12")   # shaped still: a cut link is
        assert back is not None and back >= 0.2, back     # relayed again once up
    finally:
        down = cluster("down", tmp_path)
    assert down.returncode == 0, down.stderr
    assert left_over(tmp_path) == []


@pytest.mark.parametrize("args, says", [
    (["up", "x"], "up N: N must be a number of hosts, got 'x'"),
    (["up", "0"], "up N: N must be 1 to 200, got 0"),
    (["start"], "usage: scripts/netns_cluster.sh up [N] [DIR] | down [DIR] | link I down|up | "
                "shape NETEM...|off | refuse|accept I [DIR] | hide|unhide I PATH [DIR]"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, says):
    result = cluster(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == "netns_cluster.sh: " + says
