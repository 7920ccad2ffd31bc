"""xception-launch: the ssh launcher (through a stand-in for ssh, ``fake_ssh.py``, that
runs the remote command here in a bare environment) places processes and trains, kills the
remote processes when a worker dies, keeps arguments word for word; host files, flags,
timeouts, programs that cannot start and dry runs."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import failure_output, run_tool
from distributed_jobs import (BOUND, FAKE_SSH, LAUNCH, WORKER, assert_processes_gone,
                              assert_ranks_equal_one_process, process_gone, write_hosts)


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
    # one connection a host to check it, then one a process
    assert sorted(log.read_text().splitlines()) == ["127.0.0.1 22"] * 3 + ["localhost 2222"] * 2
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
    assert re.search(r"worker \d \(rank 1\) on 127.0.0.1 exited with status 137; stopping the "
                     r"job", result.stderr)
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
    started = re.search(r"scheduler on \S+, pid (\d+)", result.stderr)
    if "ssh" in args:           # ssh is run first to check the hosts: nothing started
        assert started is None, result.stderr
    else:
        assert process_gone(int(started.group(1)))


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


@pytest.mark.parametrize("args, says", [
    (["--workdir", "/no/such/folder", "--", "true"],
     "host 127.0.0.1: no folder /no/such/folder (the processes run in --workdir"),
    (["--python", "/no/such/python", "--", "true"],
     "host 127.0.0.1: no Python at /no/such/python (--python; the venv must be at the same "
     "path on every host)"),
    (["--", "/no/such/program"],
     "host 127.0.0.1: cannot run /no/such/program there (the worker command"),
    (["--", "env", "A=1", "/no/such/program"],
     "host 127.0.0.1: cannot run /no/such/program there (the worker command"),
])
def test_a_host_without_the_folder_python_or_command_is_refused_before_anything_starts(
        tmp_path, args, says):
    hosts = write_hosts(tmp_path / "hosts", "127.0.0.1\n")
    log = tmp_path / "ssh.log"
    result = run_tool("xception-launch", "-n", "1", "--launcher", "ssh", "--hosts", hosts,
                      "--host", "127.0.0.1", "--ssh", FAKE_SSH, *args,
                      env={"FAKE_SSH_LOG": str(log)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("xception-launch: error: " + says), result.stderr
    assert result.stderr.rstrip().endswith("; nothing started")
    assert len(result.stderr.strip().splitlines()) == 1 and "pid" not in result.stderr
    assert log.read_text().splitlines() == ["127.0.0.1 22"]      # the check's one connection


def test_a_remote_process_whose_launcher_falls_silent_is_killed_by_its_watchdog(tmp_path):
    """A link that goes down closes no connection: the remote side only sees the heartbeats
    stop.  The launcher is stopped (SIGSTOP), its connections left open: the remote worker
    must be gone within --link-timeout (3 s) and a second, and the job then stopped."""
    hosts = write_hosts(tmp_path / "hosts", "127.0.0.1\n")
    job = subprocess.Popen(
        [LAUNCH, "-n", "1", "--launcher", "ssh", "--hosts", str(hosts), "--host", "127.0.0.1",
         "--ssh", FAKE_SSH, "--link-timeout", "3", *BOUND, "--", "sh", "-c",
         'echo "pid $$"; exec sleep 300'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=dict(os.environ, FAKE_SSH_LOG=str(tmp_path / "ssh.log")))
    said = ""
    while not re.search(r"\[worker 0\] pid \d+\n", said):
        line = job.stdout.readline()
        assert line, said + job.stderr.read()           # the job ended first
        said += line
    pid = int(re.search(r"\[worker 0\] pid (\d+)", said).group(1))
    time.sleep(4)                       # beats arrive: the worker lives past --link-timeout
    assert not process_gone(pid)
    job.send_signal(signal.SIGSTOP)
    silent = time.time()
    while not process_gone(pid) and time.time() - silent < 10:
        time.sleep(0.05)
    gone = time.time() - silent
    job.send_signal(signal.SIGCONT)
    _, stderr = job.communicate(timeout=60)
    # silent from the last beat (one every 0.6 s, late on a loaded machine) for 3 s
    assert process_gone(pid) and 1 <= gone < 4.5, "gone after %.1f s" % gone
    assert job.returncode == 1
    assert re.search(r"(server|worker) 0 on 127.0.0.1 exited with status 137; stopping the "
                     r"job", stderr), stderr


def test_ssh_is_given_whole_seconds_whatever_the_link_timeout(tmp_path):
    """ssh takes no fractions of a second ("invalid time value", exit 255): --link-timeout
    10 must give ServerAliveInterval=3, not 3.33333."""
    hosts = write_hosts(tmp_path / "hosts", "127.0.0.1\n")
    shown = run_tool("xception-launch", "-n", "1", "--launcher", "ssh", "--hosts", hosts,
                     "--host", "127.0.0.1", "--link-timeout", "10", "--dry-run", "--", "true")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("-o ServerAliveInterval=3 -o ServerAliveCountMax=3 ") == 2
    valid = subprocess.run(["ssh", "-G", "-o", "ServerAliveInterval=3", "127.0.0.1"],
                           capture_output=True, text=True)
    assert valid.returncode == 0, valid.stderr
