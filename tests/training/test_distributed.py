"""Data-parallel fine-tuning over several processes, on loopback: on MXNet's
parameter server with the local launcher and with the ssh launcher (through a
stand-in for ssh, ``fake_ssh.py``, that runs the remote command here in a bare
environment), and with Horovod (Gloo) under horovodrun."""
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from conftest import BIN, failure_output, run_tool
from rounding import assert_within_rounding, deviation
from shapes_dataset import write_shapes_dataset
from xception_mx.training.optimizers import resolve_optimizer
from xception_mx.training.train import build_network, make_trainer, train_step, trainable_params

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker.py")
FAKE_SSH = "%s %s" % (sys.executable, os.path.join(HERE, "fake_ssh.py"))
LAUNCH = os.path.join(BIN, "xception-launch")
FINETUNE = os.path.join(BIN, "xception-finetune")
BOUND = ("--timeout", "400")     # no test can hang the suite


def single_process_reference(pretrained, steps=2, reverse=False, slices=1):
    """One process on the combined batch, learning rate x 2 (the linear scaling
    that summing gradients over 2 workers amounts to); with ``reverse`` each
    batch in reverse order, with ``slices`` fed in that many slices on the one
    device (the same sums evaluated another way: this run's rounding, see
    rounding.py)."""
    net, _, _ = build_network(3, (71, 71), [mx.cpu()], pretrained, seed=0, frozen_bn=True)
    trainer = make_trainer(trainable_params(net, False),
                           resolve_optimizer("nag", 0.002, {"momentum": 0.9, "wd": 0.0}), "device")
    rng = np.random.RandomState(0)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        x = rng.uniform(-1, 1, (8, 3, 71, 71)).astype(np.float32)
        y = rng.randint(0, 3, 8).astype(np.float32)
        order = slice(None, None, -1) if reverse else slice(None)
        train_step(net, trainer, loss_fn, mx.nd.array(x[order]), mx.nd.array(y[order]),
                   [mx.cpu()] * slices)
    return {k: p.data().asnumpy() for k, p in net.collect_params().items()}


@pytest.mark.slow
def test_two_workers_end_identical_and_equal_to_one_process(base, tmp_path):
    result = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--", sys.executable,
                      WORKER, "dist_sync", base / "x71", tmp_path)
    assert result.returncode == 0, failure_output(result)
    # the scheduler assigns ranks, so launch order and rank may differ
    # ps-lite's scheduler assigns the ranks; the prefix follows what each worker says
    assert re.search(r"^\[rank 0\] rank 0 done", result.stdout, re.M)
    assert re.search(r"^\[rank 1\] rank 1 done", result.stdout, re.M)
    assert_ranks_equal_one_process(base, tmp_path)


def assert_ranks_equal_one_process(base, tmp_path):
    ranks = [{k: v.asnumpy() for k, v in mx.nd.load(str(tmp_path / ("rank%d.params" % r)))
              .items()} for r in (0, 1)]
    reference = single_process_reference(str(base / "x71"))
    start = single_process_reference(str(base / "x71"), steps=0)
    rounding = max(deviation(single_process_reference(str(base / "x71"), **how), reference, start)
                   for how in ({"reverse": True}, {"slices": 2}))
    for name, value in ranks[0].items():
        assert np.array_equal(value, ranks[1][name]), name
    # gradients summed as two half-batches instead of one batch: float rounding only,
    # bounded by this run's own rounding (rounding.py), on any CPU
    assert_within_rounding(deviation(ranks[0], reference, start), rounding,
                           "2 workers vs 1 process")


@pytest.mark.slow
def test_a_dead_worker_stops_the_whole_job(base, tmp_path):
    start = time.time()
    result = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--", sys.executable,
                      WORKER, "dist_sync", base / "x71", tmp_path, "die")
    assert result.returncode == 1
    assert re.search(r"worker \d \(rank 1\) exited with status -9; stopping the job",
                     result.stderr)
    assert time.time() - start < 120
    assert_processes_gone(result.stdout)


def process_gone(pid):
    """No such process, or a zombie awaiting its reaper."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def assert_processes_gone(output, within=10):
    """Every worker that printed its pid is gone, at the latest ``within`` seconds after the
    launcher returned (a remote worker dies when its watchdog sees the connection close)."""
    pids = [int(p) for p in re.findall(r"^\[rank \d\] rank \d pid (\d+)$", output, re.M)]
    assert len(pids) == 2, output[-2000:]
    deadline = time.time() + within
    while not all(process_gone(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    for pid in pids:
        assert process_gone(pid), "worker pid %d still runs %d s later" % (pid, within)


def start_until_first_checkpoint(argv, out, log_path):
    """Start a training job, its output to ``log_path``; return it, still
    running, once epoch 0's checkpoint in ``out`` is complete."""
    with open(log_path, "w") as log:
        job = subprocess.Popen([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "epoch-0000.json").exists():
        assert job.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.05)
    return job


def assert_resumed_to_the_end(resumed, out):
    """A ``--resume`` run continued from epoch 0 or 1, ran all 3 epochs, exported."""
    assert resumed.returncode == 0, failure_output(resumed)
    assert re.search(r"resuming from epoch [01] of", resumed.stdout)
    with open(out / "metrics.csv") as f:
        assert [int(line.split(",")[0]) for line in f.readlines()[1:]] == [0, 1, 2]
    assert (out / "model-0000.params").exists()


def dist_finetune_args(base, out, *extra):
    return [FINETUNE, base / "data", "--out", out, "--pretrained", base / "x71",
            "--input-shape", "71", "71", "--batch-size", "4", "--val-split", "0.25",
            "--kvstore", "dist_sync", "--workers", "0"] + list(extra)


@pytest.mark.slow
def test_finetune_runs_as_a_two_worker_job_with_a_head_only_phase(base, tmp_path):
    out = tmp_path / "run"
    result = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--",
                      *dist_finetune_args(base, out, "--epochs", "2", "--freeze-base-epochs",
                                          "1"))
    assert result.returncode == 0, failure_output(result)
    logged = re.findall(r"^\[(rank \d)\] epoch 1: train", result.stdout, re.M)
    assert logged == ["rank 0"]                             # only rank 0 logs
    assert (out / "epoch-0001.json").exists() and (out / "model-0000.params").exists()
    pretrained = mx.nd.load(str(base / "x71-0000.params"))
    epochs = [mx.nd.load(str(out / ("epoch-%04d.params" % e))) for e in (0, 1)]
    for name in ("block1_conv1_weight", "block7_sepconv2_pointwise_weight"):
        reference = pretrained["arg:" + name].asnumpy()
        np.testing.assert_array_equal(epochs[0][name].asnumpy(), reference, err_msg=name)
        assert np.abs(epochs[1][name].asnumpy() - reference).max() > 1e-6, name
    assert np.abs(epochs[1]["predictions_weight"].asnumpy()
                  - epochs[0]["predictions_weight"].asnumpy()).max() > 1e-6


@pytest.mark.slow
def test_a_killed_worker_stops_the_job_and_resume_completes_it(base, tmp_path):
    out, log_path = tmp_path / "run", tmp_path / "launch.log"
    command = [LAUNCH, "-n", "2", "-s", "1", *BOUND, "--"] + \
        dist_finetune_args(base, out, "--epochs", "3")
    job = start_until_first_checkpoint(command, out, log_path)
    pids = dict(re.findall(r"^xception-launch: (worker \d) on \S+, pid (\d+)$",
                           log_path.read_text(), re.M))
    os.kill(int(pids["worker 1"]), signal.SIGKILL)
    started = time.time()
    status = job.wait(timeout=120)
    text = log_path.read_text()
    assert status == 1, text[-3000:]
    assert re.search(r"worker 1 \(rank [01]\) exited with status -9; stopping the job "
                     r"\(restart it with --resume\)", text)
    assert time.time() - started < 60
    assert not (out / "model-0000.params").exists()
    resumed = run_tool("xception-launch", "-n", "2", "-s", "1", *BOUND, "--",
                       *dist_finetune_args(base, out, "--epochs", "3", "--resume"))
    assert_resumed_to_the_end(resumed, out)
    assert not list(out.glob(".*.tmp*"))


def test_dist_kvstore_without_the_launcher_is_refused(base, tmp_path):
    result = run_tool("xception-finetune", base / "data", "--out", tmp_path / "run",
                      "--kv-store", "dist_sync")        # MXNet examples' spelling works too
    assert result.returncode == 2 and "xception-launch" in result.stderr


def write_hosts(path, text):
    path.write_text(text)
    return path


@pytest.mark.slow
def test_ssh_launcher_places_processes_round_robin_and_trains(base, tmp_path):
    hosts = write_hosts(tmp_path / "hosts", "# two machines\n127.0.0.1\nlocalhost:2222 slots=4\n")
    log = tmp_path / "ssh.log"
    result = subprocess.run(
        [LAUNCH, "-n", "2", "-s", "1", "--launcher", "ssh", "--hosts", str(hosts),
         "--host", "127.0.0.1", "--ssh", FAKE_SSH, *BOUND, "--", sys.executable, WORKER,
         "dist_sync", str(base / "x71"), str(tmp_path)], capture_output=True, text=True,
        timeout=600,
        env=dict(os.environ, FAKE_SSH_LOG=str(log), OMP_NUM_THREADS="1"))
    assert result.returncode == 0, failure_output(result)
    # servers then workers, round-robin over the hosts; the ssh port where given
    for placed in ("server 0 on 127.0.0.1", "worker 0 on localhost", "worker 1 on 127.0.0.1"):
        assert "xception-launch: %s via ssh" % placed in result.stderr
    assert sorted(log.read_text().splitlines()) == ["127.0.0.1 22", "127.0.0.1 22",
                                                    "localhost 2222"]
    # the bare remote environment got the DMLC_* and forwarded variables
    assert len(re.findall(r"rank \d done \(OMP_NUM_THREADS=1\)", result.stdout)) == 2
    assert_ranks_equal_one_process(base, tmp_path)


@pytest.mark.slow
def test_ssh_launcher_kills_the_remote_processes_when_a_worker_dies(base, tmp_path):
    hosts = write_hosts(tmp_path / "hosts", "127.0.0.1\n")
    result = subprocess.run(
        [LAUNCH, "-n", "2", "-s", "1", "--launcher", "ssh", "--hosts", str(hosts),
         "--host", "127.0.0.1", "--ssh", FAKE_SSH, *BOUND, "--", sys.executable, WORKER,
         "dist_sync", str(base / "x71"), str(tmp_path), "die"], capture_output=True, text=True,
        timeout=600,
        env=dict(os.environ, FAKE_SSH_LOG=str(tmp_path / "ssh.log")))
    assert result.returncode == 1
    assert re.search(r"worker \d \(rank 1\) exited with status 137; stopping the job",
                     result.stderr)
    assert_processes_gone(result.stdout)


def test_remote_commands_keep_their_arguments_word_for_word(tmp_path):
    hosts = write_hosts(tmp_path / "hosts", "127.0.0.1\n")
    awkward = "a b 'c' \"d\" $HOME; e"
    result = subprocess.run(
        [LAUNCH, "-n", "1", "--launcher", "ssh", "--hosts", str(hosts), "--host", "127.0.0.1",
         "--ssh", FAKE_SSH, "--grace", "1", "--workdir", str(tmp_path), *BOUND, "--",
         "sh", "-c", 'printf "<%s> in %s\\n" "$1" "$PWD"', "sh", awkward],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, FAKE_SSH_LOG=str(tmp_path / "ssh.log")))
    assert result.returncode == 0, result.stderr
    assert "[worker 0] <%s> in %s\n" % (awkward, tmp_path) in result.stdout


def test_a_job_longer_than_its_timeout_is_stopped(tmp_path):
    start = time.time()
    result = run_tool("xception-launch", "-n", "1", "--timeout", "3", "--", sys.executable,
                      "-c", "import time; time.sleep(120)")
    assert result.returncode == 1
    assert "xception-launch: the job ran longer than --timeout 3 s; stopping it" in result.stderr
    assert time.time() - start < 30


@pytest.mark.parametrize("hosts_text, args, message", [
    (None, ["--launcher", "ssh"], "--launcher ssh needs --hosts FILE"),
    ("127.0.0.1\n", ["--launcher", "local"], "--hosts is for --launcher ssh"),
    ("", ["--launcher", "ssh"], "no hosts listed"),
    ("127.0.0.1:ssh\n", ["--launcher", "ssh"], "line 1: ssh port 'ssh' is not a number"),
    ("# ok\nno-such-host.invalid\n", ["--launcher", "ssh"],
     "line 2: cannot resolve host 'no-such-host.invalid'"),
    ("a b\n", ["--launcher", "ssh"], "line 1: expected HOST or HOST:SSH_PORT"),
])
def test_bad_host_files_and_flags_are_refused_in_one_line(tmp_path, hosts_text, args, message):
    extra = []
    if hosts_text is not None:
        extra = ["--hosts", str(write_hosts(tmp_path / "hosts", hosts_text))]
    result = run_tool("xception-launch", "-n", "1", *args, *extra, "--", "true")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_host_file_is_named(tmp_path):
    result = run_tool("xception-launch", "-n", "1", "--launcher", "ssh", "--hosts",
                      tmp_path / "missing", "--", "true")
    assert result.returncode == 2
    assert "--hosts %s: cannot read it (No such file or directory)" % (tmp_path / "missing") \
        in result.stderr


@pytest.mark.parametrize("args, missing", [
    (["--", "/no/such/program"], "/no/such/program"),
    (["--launcher", "ssh", "--ssh", "/no/such/ssh", "--", "true"], "/no/such/ssh"),
])
def test_a_program_that_cannot_start_is_named_and_nothing_is_left_running(tmp_path, args,
                                                                          missing):
    hosts = write_hosts(tmp_path / "hosts", "127.0.0.1\n")
    extra = ["--hosts", str(hosts), "--host", "127.0.0.1"] if "ssh" in args else []
    result = run_tool("xception-launch", "-n", "1", *extra, *args)
    assert result.returncode == 2
    assert "xception-launch: error: cannot start %s: No such file or directory" % missing \
        in result.stderr
    scheduler = int(re.search(r"scheduler on \S+, pid (\d+)", result.stderr).group(1))
    assert process_gone(scheduler)


def test_dry_run_shows_every_command_and_forwards_only_what_the_user_set(tmp_path):
    hosts = write_hosts(tmp_path / "hosts", "127.0.0.1\nlocalhost:2222\n")
    args = ["-n", "2", "-s", "1", "--launcher", "ssh", "--hosts", hosts, "--host", "10.1.2.3",
            "--port", "9000", "--workdir", "/shared/job", "--dry-run", "--", "train", "a b"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    shown = subprocess.run([LAUNCH] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=60, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "scheduler on 10.1.2.3", "server 0 on 127.0.0.1", "worker 0 on localhost",
        "worker 1 on 127.0.0.1"]
    assert "DMLC_ROLE=scheduler" in lines[0] and "DMLC_PS_ROOT_PORT=9000" in lines[0]
    assert lines[2].startswith("worker 0 on localhost: ssh -o BatchMode=yes")
    assert " -p 2222 localhost 'cd /shared/job && exec env " in lines[2]
    for needed in ("DMLC_PS_ROOT_URI=10.1.2.3", "DMLC_ROLE=worker", "XCEPTION_MX_WORKER=0"):
        assert needed in lines[2]
    # this machine's thread count (set by xception-mx for its own cores) stays here
    assert "OMP_NUM_THREADS" not in shown.stdout
    env["OMP_NUM_THREADS"] = "7"
    shown = subprocess.run([LAUNCH] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=60, env=env)
    assert shown.stdout.count("OMP_NUM_THREADS=7") == 3      # server and both workers
    assert "pid" not in shown.stderr                         # nothing was started


def horovodrun(n, *command):
    return subprocess.run([os.path.join(BIN, "horovodrun"), "-np", str(n), "--gloo", "-H",
                           "localhost:%d" % n] + [str(c) for c in command],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_horovod_workers_end_identical_and_equal_to_one_process(base, tmp_path):
    result = horovodrun(2, sys.executable, WORKER, "horovod", base / "x71", tmp_path)
    assert result.returncode == 0, failure_output(result)
    assert_ranks_equal_one_process(base, tmp_path)


def horovod_worker(job, rank):
    """The xception-finetune process of ``rank`` among ``job``'s descendants."""
    import psutil
    for child in psutil.Process(job.pid).children(recursive=True):
        try:
            if any("xception-finetune" in word for word in child.cmdline()) and \
                    child.environ().get("HOROVOD_RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    raise AssertionError("no xception-finetune process of rank %d" % rank)


@pytest.mark.slow
def test_horovod_finetune_stops_when_a_worker_dies_and_resume_completes_it(base, tmp_path):
    out, log_path = tmp_path / "run", tmp_path / "horovodrun.log"
    command = [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo", "-H", "localhost:2"]
    args = [str(a) for a in dist_finetune_args(base, out, "--epochs", "3",
                                               "--freeze-base-epochs", "1")]
    args[args.index("dist_sync")] = "horovod"
    job = start_until_first_checkpoint(command + args, out, log_path)
    horovod_worker(job, 1).kill()
    started = time.time()
    status = job.wait(timeout=120)
    assert status != 0, log_path.read_text()[-3000:]
    assert time.time() - started < 60
    assert not (out / "model-0000.params").exists()
    resumed = subprocess.run(command + args + ["--resume"], capture_output=True, text=True,
                             timeout=600)
    assert_resumed_to_the_end(resumed, out)
    logged = re.findall(r"^\[(\d)\]<stdout>:epoch 2: train", resumed.stdout, re.M)
    assert logged == ["0"]                                   # only rank 0 logs


def test_horovod_without_horovodrun_is_refused(base, tmp_path):
    result = run_tool("xception-finetune", base / "data", "--out", tmp_path / "run",
                      "--kvstore", "horovod")
    assert result.returncode == 2
    assert "--kvstore horovod: start the job with horovodrun" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_launched_worker_without_a_dist_kvstore_is_refused(base, tmp_path):
    """Issue #15, item 2: under xception-launch without --kvstore dist_*, each
    worker would train alone on all the data and export into the same folder."""
    out = tmp_path / "run"
    result = run_tool("xception-launch", "-n", "2", "-s", "1", "--timeout", "120", "--",
                      FINETUNE, base / "data", "--out", out, "--pretrained", base / "x71",
                      "--input-shape", "71", "71", "--batch-size", "4", "--epochs", "1",
                      "--workers", "0")
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    assert "--kvstore is device: add --kvstore dist_sync" in text, text[-3000:]
    assert not out.exists()


def two_worker_job(backend, argv, timeout=300):
    """``argv`` (an xception-finetune command) as 2 workers of ``backend``
    (``dist_sync``: xception-launch, 1 server; ``horovod``: horovodrun), bounded
    in time so that a hang fails instead of stopping the suite."""
    argv = [str(a) for a in argv] + ["--kvstore", backend]
    if backend == "horovod":
        command = [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo", "-H", "localhost:2"]
    else:
        command = [LAUNCH, "-n", "2", "-s", "1", "--timeout", str(timeout - 60), "--"]
    return subprocess.run(command + argv, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dist_sync", "horovod"])
@pytest.mark.parametrize("freeze", [[], ["--freeze-base-epochs", "1"]], ids=["all", "head-first"])
def test_a_job_without_validation_data_finishes_and_exports(backend, freeze, base, tmp_path):
    """Issue #15, item 1: without --val, the workers that have nothing left to
    do after the last epoch once exited with their share of the BN-statistics
    exchange still queued, and rank 0 waited for it forever."""
    out = tmp_path / "run"
    started = time.time()
    result = two_worker_job(backend, [FINETUNE, base / "data", "--out", out, "--pretrained",
                                      base / "x71", "--input-shape", "71", "71", "--batch-size",
                                      "4", "--epochs", "2", "--workers", "0"] + freeze)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    assert (out / "epoch-0001.json").exists() and (out / "model-0000.params").exists()
    assert "training (no validation data" in text
    assert time.time() - started < 240


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dist_sync", "horovod"])
def test_a_shard_smaller_than_a_batch_stops_every_worker_with_the_reason(backend, base,
                                                                         tmp_path):
    small = tmp_path / "small"
    write_shapes_dataset(str(small), per_class=1, seed=3, size=(80, 80))   # 3 images
    result = two_worker_job(backend, [FINETUNE, small, "--out", tmp_path / "run",
                                      "--pretrained", base / "x71", "--input-shape", "71", "71",
                                      "--batch-size", "2", "--epochs", "1", "--workers", "0"],
                            timeout=200)
    text = result.stdout + result.stderr
    assert result.returncode != 0, text[-3000:]
    assert "fewer than one batch" in text, text[-3000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dist_sync", "horovod"])
def test_a_job_killed_after_an_epoch_resumes_at_the_next_and_ends_like_an_uninterrupted_one(
        backend, base, tmp_path):
    """Rank 0 is killed at a named point, right after epoch 0's checkpoint: the
    job stops, --resume starts at epoch 1 (not from the start), and its epoch 1
    equals an uninterrupted job's within the rounding of two uninterrupted jobs."""
    from rounding import assert_within_rounding, deviation
    from xception_mx.faults import KILL_MARK, KILL_POINT

    def args(out):
        return [FINETUNE, base / "data", "--out", out, "--pretrained", base / "x71",
                "--input-shape", "71", "71", "--batch-size", "4", "--epochs", "2",
                "--workers", "0", "--lr", "0.001", "--freeze-bn", "--val-split", "0.25"]
    for name in ("whole", "again"):
        done = two_worker_job(backend, args(tmp_path / name))
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    out, mark = tmp_path / "killed", tmp_path / "mark"
    command = [LAUNCH, "-n", "2", "-s", "1", *BOUND, "--"] if backend == "dist_sync" else \
        [os.path.join(BIN, "horovodrun"), "-np", "2", "--gloo", "-H", "localhost:2"]
    env = dict(os.environ, **{KILL_POINT: "epoch-0:checkpoint-written", KILL_MARK: str(mark)})
    job = subprocess.Popen([str(a) for a in command + args(out) + ["--kvstore", backend]],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not mark.exists():
        assert job.poll() is None and time.time() < deadline, "never reached the kill point"
        time.sleep(0.05)
    pid = int(mark.read_text().split()[0])
    os.kill(pid, 0)                                      # alive, waiting at the point
    os.kill(pid, signal.SIGKILL)
    assert job.wait(timeout=120) != 0
    assert (out / "epoch-0000.json").exists() and not (out / "epoch-0001.json").exists()
    resumed = two_worker_job(backend, args(out) + ["--resume"])
    text = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, text[-3000:]
    assert "resuming from epoch 0 of" in text and "epoch 0: train" not in text
    load = lambda path: {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}  # noqa
    whole, again, killed = (load(tmp_path / run / "epoch-0001.params")
                            for run in ("whole", "again", "killed"))
    assert all(np.isfinite(v).all() for v in whole.values())        # a stable run
    # deviations relative to how far training moved each parameter from the start;
    # a resume that lost the epoch-0 parameters is off by about half the movement
    start = single_process_reference(str(base / "x71"), steps=0)
    assert_within_rounding(deviation(killed, whole, start), deviation(again, whole, start),
                           "resumed vs uninterrupted, epoch 1")
