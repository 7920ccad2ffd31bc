"""Fine-tuning jobs across hosts in network namespaces, over real ssh and real links
(scripts/netns_cluster.sh, issue 44): the parameter server's dist_sync and dist_device_sync
and Horovod end with the export of the same job run on one host; a worker's or the server's
link set down mid-epoch stops the job within its bound, naming the host, with nothing left
running on any host, and --resume completes it; a slow, lossy network still completes; a host
that refuses ssh or lacks the venv is refused before anything starts."""
import json
import os
import re
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from conftest import BIN, failure_output
from netns import (GATEWAY, cluster, cluster_up, interface_bytes, needs_namespaces, running_on,
                   shape, sshd_or_fail)

pytestmark = [needs_namespaces, pytest.mark.slow]
LAUNCH, FINETUNE = os.path.join(BIN, "xception-launch"), os.path.join(BIN, "xception-finetune")
EPOCHS = 2                       # of every job here
LINK_TIMEOUT = 6                 # --link-timeout of the jobs here (default 15)
# the launcher exits at most this long after a link goes down: ssh's ServerAlive ends the
# connection after 3 silent intervals of LINK_TIMEOUT / 3, within one more, then the others
# stop (5 s for the remote ones' connections to close)
STOP_BOUND = LINK_TIMEOUT * 4 / 3 + 5
# the cut-off host's processes end at most this long after it: the watchdog's silence limit
# counted from the last heartbeat (one every LINK_TIMEOUT / 5 s)
GONE_BOUND = LINK_TIMEOUT + 2
REPORT = os.environ.get("XCEPTION_MX_NETNS_REPORT")     # scripts/netns_check.sh's summary


def report(case, **figures):
    """One summary line for scripts/netns_check.sh (and the test's own output)."""
    print("%s: %s" % (case, json.dumps(figures)))
    if REPORT:
        test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].rsplit(" (", 1)[0]
        with open(REPORT, "a") as f:
            f.write(json.dumps(dict(test=test, case=case, **figures)) + "\n")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    sshd_or_fail()
    directory = tmp_path_factory.mktemp("cluster")
    with cluster_up(directory, 3):
        yield directory


@pytest.fixture(autouse=True)
def links_restored(hosts):
    yield
    for host in (1, 2, 3):
        cluster("link", host, "up")
    cluster("shape", "off")


def finetune(base, out, kvstore, *extra):
    return [FINETUNE, base / "data", "--out", out, "--pretrained", base / "x71",
            "--input-shape", "71", "71", "--batch-size", "2", "--epochs", EPOCHS, "--workers",
            "0", "--val-split", "0.25", "--lr", "0.001", "--kvstore", kvstore] + list(extra)


def on_cluster(hosts, command):
    """``command`` as 2 workers and 1 server over ssh on the cluster's 3 hosts (server 0 on
    host 1, worker 0 on host 2, worker 1 on host 3)."""
    return [LAUNCH, "-n", "2", "-s", "1", "--launcher", "ssh", "--hosts", hosts / "hosts",
            "--host", GATEWAY, "--ssh", "ssh -F %s" % (hosts / "ssh_config"),
            "--link-timeout", str(LINK_TIMEOUT), "--timeout", "600", "--"] + command


def on_loopback(command):
    return [LAUNCH, "-n", "2", "-s", "1", "--timeout", "300", "--"] + command


def run(argv, env=None):
    # one thread a process on both sides: the same kernels, whatever this machine's cores
    environ = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=700, env=environ)


def export(out):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(out / "model-0000.params")).items()}


def assert_same_export(case, cluster_out, one_host_out):
    """The cluster's export against the one-host job's: the same sums in the same order, so
    the same numbers; the largest difference is reported."""
    mine, reference = export(cluster_out), export(one_host_out)
    assert sorted(mine) == sorted(reference)
    worst = max(float(np.abs(mine[k] - reference[k]).max()) for k in reference)
    report(case, largest_difference=worst)
    assert worst == 0.0, "%s: the cluster's export differs from one host's by %g" % (case,
                                                                                      worst)


def epoch_seconds(out):
    with open(out / "metrics.csv") as f:
        rows = [line.strip().split(",") for line in f]
    return float(rows[-1][rows[0].index("seconds")])        # the last: warmed up


def traced(trace, command):
    """``command`` noting each step it reaches in ``trace`` (XCEPTION_MX_TRACE), set on the
    command line: the launcher forwards no such variable to the hosts."""
    return ["env", "XCEPTION_MX_TRACE=%s" % trace] + command


def measured(argv, out, trace):
    """Run a job whose command is ``traced`` into ``trace``, its output in ``out``; return it
    and its figures: seconds of epoch 2 (warmed up), steps a worker takes an epoch, bytes
    through each host's link a step (both ways, over the whole job)."""
    before = [interface_bytes(h) for h in (1, 2, 3)]
    done = run(argv)
    assert done.returncode == 0, failure_output(done)
    moved = [interface_bytes(h) - b for h, b in zip((1, 2, 3), before)]
    with open(trace) as f:
        steps = sum(1 for line in f if ":step-" in line) // 2         # 2 workers
    figures = {"epoch_s": round(epoch_seconds(out), 2), "steps_per_epoch": steps // EPOCHS,
               "bytes_per_step": {"server link": moved[0] // steps,
                                  "worker links": [m // steps for m in moved[1:]]}}
    return done, figures


@pytest.mark.parametrize("kvstore, extra", [("dist_sync", []),
                                            ("dist_device_sync", ["--cpus", "2"])],
                         ids=["dist_sync", "dist_device_sync-2-contexts-a-worker"])
def test_a_parameter_server_job_over_ssh_ends_with_the_one_host_export(hosts, base, tmp_path,
                                                                       kvstore, extra):
    trace = tmp_path / "trace"
    done, figures = measured(on_cluster(hosts, traced(trace, finetune(
        base, tmp_path / "cluster", kvstore, *extra))), tmp_path / "cluster", trace)
    for placed in ("server 0 on 198.18.0.11", "worker 0 on 198.18.0.12",
                   "worker 1 on 198.18.0.13"):
        assert "xception-launch: %s via ssh" % placed in done.stderr
    alone = run(on_loopback(finetune(base, tmp_path / "one-host", kvstore, *extra)))
    assert alone.returncode == 0, failure_output(alone)
    figures["loopback_epoch_s"] = round(epoch_seconds(tmp_path / "one-host"), 2)
    report(kvstore + " over ssh, links as made", **figures)
    assert_same_export(kvstore + " over ssh", tmp_path / "cluster", tmp_path / "one-host")


def test_horovod_across_two_hosts_ends_with_the_one_host_export(hosts, base, tmp_path):
    bin_dir = tmp_path / "bin"            # horovodrun calls `ssh`: the cluster's, here
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text('#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n'
                                 % (hosts / "ssh_config"))
    (bin_dir / "ssh").chmod(0o755)
    horovodrun = [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo"]
    env = {"PATH": "%s:%s" % (bin_dir, os.environ["PATH"])}
    done = run(horovodrun + ["-H", "198.18.0.12:1,198.18.0.13:1"] +
               finetune(base, tmp_path / "cluster", "horovod"), env)
    assert done.returncode == 0, failure_output(done)
    alone = run(horovodrun + ["-H", "localhost:2"] +
                finetune(base, tmp_path / "one-host", "horovod"))
    assert alone.returncode == 0, failure_output(alone)
    assert_same_export("horovod across 2 hosts", tmp_path / "cluster", tmp_path / "one-host")


def watch_the_stop(job, host, cut):
    """Seconds from ``cut`` until the job ended, until the cut-off host's processes were gone,
    until every host's were."""
    ended = cut_gone = all_gone = None
    while time.time() - cut < 120 and None in (ended, cut_gone, all_gone):
        now = time.time() - cut
        if ended is None and job.poll() is not None:
            ended = now
        if cut_gone is None and not running_on(host):
            cut_gone = now
        if all_gone is None and not any(running_on(h) for h in (1, 2, 3)):
            all_gone = now
        time.sleep(0.1)
    left = {h: running_on(h) for h in (1, 2, 3)}
    assert not any(left.values()), "still running 120 s after the link went down: %s" % left
    return ended, cut_gone, all_gone


@pytest.mark.parametrize("host, role", [(3, "worker 1"), (1, "server 0")],
                         ids=["worker-host", "server-host"])
def test_a_link_down_mid_epoch_stops_the_job_naming_the_host_and_resume_completes_it(
        hosts, base, tmp_path, host, role):
    out, mark, log = tmp_path / "run", tmp_path / "mark", tmp_path / "job.log"
    paused = ["env", "XCEPTION_MX_KILL_POINT=epoch-2:step-1", "XCEPTION_MX_KILL_MARK=%s" % mark]
    with open(log, "w") as output:
        job = subprocess.Popen([str(a) for a in on_cluster(hosts, paused + finetune(
            base, out, "dist_sync"))], stdout=output, stderr=subprocess.STDOUT,
            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 300
    while not mark.exists():                 # both workers wait at epoch 2's first step
        assert job.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    assert cluster("link", host, "down").returncode == 0
    stopped, cut_gone, all_gone = watch_the_stop(job, host, time.time())
    address = "198.18.0.1%d" % host
    said = [line for line in log.read_text().splitlines() if "lost the connection" in line]
    assert job.wait() == 1 and len(said) == 1, log.read_text()[-3000:]
    assert re.match(r"xception-launch: %s( \(rank \d\))? on %s: lost the connection to %s "
                    % (role, address, address), said[0]), said[0]
    report("%s's link down" % role, job_stopped_s=round(stopped, 1),
           its_host_clear_s=round(cut_gone, 1), every_host_clear_s=round(all_gone, 1))
    assert stopped < STOP_BOUND and all_gone < STOP_BOUND and cut_gone < GONE_BOUND
    assert (out / "epoch-0001.json").exists() and not (out / "epoch-0002.json").exists()
    assert cluster("link", host, "up").returncode == 0
    resumed = run(on_cluster(hosts, finetune(base, out, "dist_sync", "--resume")))
    assert resumed.returncode == 0, failure_output(resumed)
    assert "xception-finetune: resuming after epoch 1 of %s" % out in resumed.stdout
    assert (out / "model-0000.params").exists()


def shaped_job(hosts, base, tmp_path, *extra):
    """The dist_sync job with ``extra`` options, first with 50 ms and 1% loss on every link
    (tc netem, or scripts/link_emulator.py on a kernel without it), then on loopback: its
    figures, which shaper, and the epoch's seconds on loopback."""
    shaped = shape("delay", "50ms", "loss", "1%")
    trace = tmp_path / "trace"
    done, figures = measured(on_cluster(hosts, traced(trace, finetune(
        base, tmp_path / "slow", "dist_sync", *extra))), tmp_path / "slow", trace)
    figures["shaped_by"] = shaped.stdout.strip().rsplit(" by ", 1)[-1]
    unshaped = cluster("shape", "off")
    assert unshaped.returncode == 0, unshaped.stderr
    if "frames {" in unshaped.stdout:          # the emulator's: seen, lost, dropped by the kernel
        figures["emulator_frames"] = unshaped.stdout.split("frames ", 1)[1].strip()
    alone = run(on_loopback(finetune(base, tmp_path / "loopback", "dist_sync", *extra)))
    assert alone.returncode == 0, failure_output(alone)
    figures["loopback_epoch_s"] = round(epoch_seconds(tmp_path / "loopback"), 2)
    return figures


def test_a_slow_lossy_network_still_completes_a_job_training_the_head(hosts, base, tmp_path):
    figures = shaped_job(hosts, base, tmp_path, "--freeze-base-epochs", EPOCHS)
    report("dist_sync, the head only, 50 ms and 1% loss on every link", **figures)
    assert (tmp_path / "slow" / "model-0000.params").exists()


@pytest.mark.skipif(not REPORT, reason="about 5 minutes over the slow links: "
                    "scripts/netns_check.sh runs it")
def test_a_slow_lossy_network_still_completes_a_job_training_every_layer(hosts, base,
                                                                        tmp_path):
    figures = shaped_job(hosts, base, tmp_path)
    report("dist_sync, every layer, 50 ms and 1% loss on every link", **figures)
    assert (tmp_path / "slow" / "model-0000.params").exists()


@pytest.mark.parametrize("fault, undo, says", [
    (["refuse", 3], ["accept", 3], "host 198.18.0.13: ssh failed with status 255 "
     "(root@198.18.0.13: Permission denied (publickey).); nothing started"),
    (["hide", 2, sys.prefix], ["unhide", 2, sys.prefix], "host 198.18.0.12: no Python at %s "
     "(--python; the venv must be at the same path on every host); nothing started"
     % sys.executable),
], ids=["sshd-refuses", "no-venv"])
def test_a_host_that_cannot_run_the_job_is_refused_before_anything_starts(
        hosts, base, tmp_path, fault, undo, says):
    assert cluster(*fault, hosts).returncode == 0
    try:
        done = run(on_cluster(hosts, finetune(base, tmp_path / "run", "dist_sync")))
    finally:
        assert cluster(*undo, hosts).returncode == 0
    assert done.returncode == 2, failure_output(done)
    assert done.stderr.strip() == "xception-launch: error: " + says
    assert not any(running_on(h) for h in (1, 2, 3))
    assert not (tmp_path / "run").exists()
