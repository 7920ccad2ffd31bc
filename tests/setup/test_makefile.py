"""`make` finds a Python 3.11 or names the requirement, and makes again a venv of another
Python.  Fake interpreters (shell scripts that print a version) stand for the ones a user has;
`make -n` shows what would run without installing anything."""
import os
import shutil
import subprocess
import pytest

from conftest import ROOT as REPO
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def fake_python(folder, name, version):
    """An interpreter that answers the Makefile's version question with ``version``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\necho %s\n" % version)
    path.chmod(0o755)
    return path


def make_dry_run(tmp_path, venv, *args):
    """``make -n setup`` with only the fake interpreters of ``tmp_path/bin`` on the PATH."""
    env = dict(os.environ, PATH=str(tmp_path / "bin"))
    env.pop("PYTHON", None)
    return subprocess.run([MAKE, "-n", "setup", "VENV=%s" % venv] + list(args), cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)


def test_without_python_3_11_make_names_the_requirement_and_makes_no_venv(tmp_path):
    fake_python(tmp_path / "bin", "python3", "3.12")
    done = make_dry_run(tmp_path, tmp_path / "venv")
    assert done.returncode == 2, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("make: xception-mx needs Python 3.11"), first
    assert "python3 is 3.12" in first and "make PYTHON=/path/to/python3.11" in first
    assert not (tmp_path / "venv").exists()


def test_python3_11_is_found_beside_a_newer_python3(tmp_path):
    fake_python(tmp_path / "bin", "python3", "3.12")
    fake_python(tmp_path / "bin", "python3.11", "3.11")
    done = make_dry_run(tmp_path, tmp_path / "venv")
    assert done.returncode == 0, done.stderr
    assert "python3.11 -m venv %s" % (tmp_path / "venv") in done.stdout
    assert "about 1.8 GB to download" in done.stdout        # said before the long silence


def fake_venv(venv, version):
    """A venv made by a Python of ``version`` (None: one whose interpreter is gone), set up
    (its stamp newer than setup.cfg)."""
    if version:
        fake_python(venv / "bin", "python", version)
    else:
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").symlink_to(venv / "removed" / "python3.12")
    (venv / "pyvenv.cfg").write_text("home = /somewhere\n")
    (venv / ".installed").touch()


@pytest.mark.parametrize("version, said", [("3.12", "made by Python 3.12"),
                                           (None, "made by Python one that no longer runs")])
def test_a_venv_of_another_python_is_made_again(version, said, tmp_path):
    fake_python(tmp_path / "bin", "python3.11", "3.11")
    venv = tmp_path / "venv"
    fake_venv(venv, version)
    done = make_dry_run(tmp_path, venv)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    removal = [k for k, line in enumerate(lines) if line.startswith("rm -rf %s " % venv)]
    assert removal and said in lines[removal[0]], done.stdout
    assert lines[removal[0] + 1] == "python3.11 -m venv %s" % venv


def test_a_venv_of_python_3_11_is_kept(tmp_path):
    fake_python(tmp_path / "bin", "python3.11", "3.11")
    venv = tmp_path / "venv"
    fake_venv(venv, "3.11")
    done = make_dry_run(tmp_path, venv)
    assert done.returncode == 0, done.stderr
    assert "rm -rf" not in done.stdout and "Nothing to be done" in done.stdout
