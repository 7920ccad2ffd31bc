"""``xception-export --format mms``: a Multi Model Server archive (``.mar``, built by
model-archiver) of the staged checkpoint and a one-line handler module that hands each batch
to ``deploy.service``."""
import os
import re

from xception_mx.atomic import file_mode
from xception_mx.deploy.staging import stage, write_whole
from xception_mx.errors import make_sure

HANDLER_MODULE = "xception_mms_handler"
HANDLER_TEXT = '''"""Multi Model Server's entry point of this archive (written by
xception-export): the service is xception_mx.deploy.service, so the server's Python needs
xception-mx installed."""
from xception_mx.deploy.service import handle  # noqa: F401
'''
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")    # model-archiver's own rule


def archive_name(out):
    """The model name of ``OUT.mar`` (what ``/predictions/NAME`` serves), checked as
    model-archiver checks it."""
    name = os.path.basename(out)
    make_sure(name.endswith(".mar"), "-o %s: an MMS archive is a .mar file (NAME.mar: NAME is "
              "the model's name on the server)", out)
    make_sure(MODEL_NAME.fullmatch(name[:-4]) is not None, "-o %s: the model name %r must start "
              "with a letter or digit and hold only letters, digits, _, - and .", out,
              name[:-4])
    return name[:-4]


def write_mar(prefix, out, **options):
    """Stage the checkpoint (``staging.stage``'s ``options``) and pack it as ``out``
    (``NAME.mar``), written whole or not at all.  Returns the service settings."""
    name = archive_name(out)
    return write_whole(out, lambda work: (os.path.join(work, name + ".mar"),
                                          pack(prefix, name, work, options)), "archive")


def pack(prefix, name, work, options):
    """``work/NAME.mar``: the staged checkpoint, the handler and MMS's manifest."""
    from model_archiver.arg_parser import ArgParser
    from model_archiver.model_packaging_utils import ModelExportUtils
    files = os.path.join(work, "files")
    os.makedirs(files)
    config = stage(prefix, files, **options)
    with open(os.path.join(files, HANDLER_MODULE + ".py"), "w") as f:
        f.write(HANDLER_TEXT)
    args = ArgParser.export_model_args_parser().parse_args([
        "--model-name", name, "--model-path", files, "--export-path", work,
        "--handler", HANDLER_MODULE + ":handle", "--runtime", "python3"])
    ModelExportUtils.archive(work, name, files, [], ModelExportUtils.generate_manifest_json(args))
    os.chmod(os.path.join(work, name + ".mar"), file_mode())
    return config
