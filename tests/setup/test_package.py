"""The built wheel installs beside other distributions: one import namespace, package data,
every console script working from a regular (non-editable) install.

configobj (among the most downloaded packages) installs a top-level ``validate`` package;
xception-mx 0.1 installed one too, and the two overwrote each other.  Here a wheel built from
the repository's files goes into a fresh venv next to configobj, and both must work.  The
venv sees the pinned dependencies of the suite's venv through a ``.pth`` line (installing
1.8 GB again would prove nothing more); the toolkit and configobj are its own.
"""
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import PHOTOS, ROOT
from test_readme import console_scripts, tracked_files

CONFIGOBJ = "configobj==5.0.9"


def package_folders():
    """Every folder of the source tree that is a Python package, as a dotted name."""
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "xception_mx")):
        if "__init__.py" in files:
            found.append(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    return sorted(found)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the repository's files (a build writes into its tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    for path in tracked_files():
        os.makedirs(source / os.path.dirname(path), exist_ok=True)
        with open(os.path.join(ROOT, path), "rb") as f, open(source / path, "wb") as out:
            out.write(f.read())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(work / "dist"), str(source)],
                   check=True, capture_output=True, text=True)
    (built,) = (work / "dist").glob("xception_mx-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh venv holding configobj and the wheel, installed the regular way."""
    home = tmp_path_factory.mktemp("venv")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    with open(os.path.join(site, "zz_pinned_packages.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    for args in (["--ignore-installed", CONFIGOBJ], [str(wheel)]):
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps"] + args,
                       check=True, capture_output=True, text=True)
    return venv, site


def run_in(venv, *args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env["PATH"]])
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)


def test_the_wheel_installs_one_import_package_with_its_data(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"xception_mx", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert "xception_mx/data/imagenet_classes.tsv" in names
    for package in package_folders():
        assert package.replace(".", "/") + "/__init__.py" in names, package


def test_configobj_and_the_toolkit_work_side_by_side(venv, tmp_path):
    venv, site = venv
    assert os.path.isfile(os.path.join(site, "validate", "__init__.py"))   # configobj's
    code = ("import configobj.validate, validate; from validate import Validator; "
            "import xception_mx, xception_mx.commands.parity; "
            "print(validate.__file__); print(xception_mx.__file__)")
    result = run_in(venv, venv / "bin" / "python", "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    validate_file, toolkit_file = result.stdout.split()
    assert validate_file == os.path.join(site, "validate", "__init__.py")
    assert toolkit_file == os.path.join(site, "xception_mx", "__init__.py")   # not the repo's


def test_every_console_script_of_the_installed_wheel_runs(venv, tmp_path):
    venv, _ = venv
    for name in console_scripts():
        result = run_in(venv, venv / "bin" / name, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr)


@pytest.mark.slow
def test_the_installed_wheel_converts_and_proves_parity(venv, tmp_path, keras_file_10_classes):
    venv, _ = venv
    keras_file, _ = keras_file_10_classes
    prefix = tmp_path / "ten"
    converted = run_in(venv, venv / "bin" / "keras2mxnet", keras_file, "-o", prefix,
                       "--input-shape", 96, 96, cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    parity = run_in(venv, venv / "bin" / "xception-parity", "--keras", keras_file, "--mxnet",
                    prefix, PHOTOS[0], "--random", 2, cwd=tmp_path)
    assert parity.returncode == 0, parity.stdout + parity.stderr
    assert "PASS" in parity.stdout
