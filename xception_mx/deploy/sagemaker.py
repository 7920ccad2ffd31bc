"""``xception-export --format sagemaker``: a ``model.tar.gz`` in the layout SageMaker's MXNet
inference containers load: the staged checkpoint under the names their default
``model_fn`` reads (``model-symbol.json``, ``model-0000.params``, ``model-shapes.json``),
and ``code/inference.py`` whose ``model_fn`` and ``transform_fn`` are
``deploy.sagemaker_service``'s.  ``code/`` carries this package itself (the containers do
not have it) and a ``requirements.txt`` of what it needs beyond MXNet, numpy and Pillow."""
import json
import os
import shutil
import tarfile

from xception_mx.deploy.staging import stage, write_whole
from xception_mx.errors import make_sure

ENTRY_TEXT = '''"""SageMaker's entry point of this model (written by xception-export): model_fn and
transform_fn are xception_mx.deploy.sagemaker_service's, from the copy of xception-mx in
this folder (SageMaker puts code/ first on the path)."""
from xception_mx.deploy.sagemaker_service import model_fn, transform_fn  # noqa: F401
'''
# What the serving path imports beyond mxnet, numpy and Pillow, which the containers have;
# installed by the container from code/requirements.txt when it starts
REQUIREMENTS = ("simplejpeg>=1.6.6", "tqdm>=4.62")
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tar_name(out):
    make_sure(out.endswith(".tar.gz"), "-o %s: a SageMaker model is a .tar.gz file "
              "(model.tar.gz, say)", out)
    return out


def write_model_tar(prefix, out, **options):
    """Stage the checkpoint (``staging.stage``'s ``options``) with the entry point and pack
    it as ``out`` (``NAME.tar.gz``), written whole or not at all.  Returns the service
    settings."""
    tar_name(out)
    return write_whole(out, lambda work: pack(prefix, work, options), "model")


def pack(prefix, work, options):
    """``work/model.tar.gz``: the files at its root, as SageMaker unpacks it into
    ``/opt/ml/model``."""
    files = os.path.join(work, "model")
    os.makedirs(files)
    config = stage(prefix, files, **options)
    write_shapes(files, config)
    write_code(os.path.join(files, "code"))
    path = os.path.join(work, "model.tar.gz")
    with tarfile.open(path, "w:gz") as archive:
        for name in sorted(os.listdir(files)):
            archive.add(os.path.join(files, name), arcname=name, filter=without_caches)
    return path, config


def write_shapes(folder, config):
    """``model-shapes.json``: the input's name and NCHW shape at the service's batch size,
    as the containers' default ``model_fn`` reads it."""
    from xception_mx.checkpoint.reading import read_meta
    meta = read_meta(os.path.join(folder, config["prefix"]))
    shape = [config["batch_size"], meta.channels] + list(meta.input_size())
    with open(os.path.join(folder, "model-shapes.json"), "w") as f:
        json.dump([{"name": "data", "shape": shape}], f)


def write_code(folder):
    """``code/``: ``inference.py``, ``requirements.txt`` and a copy of this package."""
    shutil.copytree(PACKAGE, os.path.join(folder, "xception_mx"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(os.path.join(folder, "inference.py"), "w") as f:
        f.write(ENTRY_TEXT)
    with open(os.path.join(folder, "requirements.txt"), "w") as f:
        f.write("".join(r + "\n" for r in REQUIREMENTS))


def without_caches(info):
    """tarfile's filter: no byte-code caches; owner and group left out."""
    if "__pycache__" in info.name or info.name.endswith(".pyc"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
