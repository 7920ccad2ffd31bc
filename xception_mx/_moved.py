"""Modules that moved, kept importable under their old names for one release.

``MOVED`` is the table (old name -> new name); ``python -m xception_mx moved`` prints it.
Importing an old name gives the new module itself (the same object) and a
``DeprecationWarning`` that names the new one; a module split in several (new names joined by
``+``) gives a module holding the public names of each, and a module whose names were
renamed with it (``RENAMED``) one holding its names under the old ones too.  The old names
go in ``REMOVED_IN``.
Test and script helpers that left the package (the robustness and kill harnesses, the
synthetic dataset, the seeded reference models) are in ``scripts/``, not in the table.

The top-level ``convert`` and ``validate`` packages of 0.1 are not in the table: installing
them again is what collided with other distributions (configobj's ``validate``); they are
``xception_mx.conversion`` and ``xception_mx.validation`` now.
"""
import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

REMOVED_IN = "0.3"
MOVED = {
    "xception_mx.fast": "xception_mx.serving.fast",
    "xception_mx.labels": "xception_mx.checkpoint.labels",
    "xception_mx.predict": "xception_mx.serving.predict",
    "xception_mx.quantize": "xception_mx.commands.quantize",
    "xception_mx.serving.quantize": "xception_mx.commands.quantize",
    "xception_mx.cli": "xception_mx.commands.runner",
    "xception_mx.conversion.cli": "xception_mx.commands.keras2mxnet",
    "xception_mx.validation.cli": "xception_mx.commands.parity",
    "xception_mx.evaluation.cli": "xception_mx.commands.evaluate",
    "xception_mx.padding": "xception_mx.model.padding",
    "xception_mx.preprocess": "xception_mx.images.decode",
    "xception_mx.model.preprocess": "xception_mx.images.decode",
    "xception_mx.training.data": "xception_mx.images",
    "xception_mx.evaluation.data": "xception_mx.images",
    "xception_mx.transfer": "xception_mx.model.own_model",
    "xception_mx.model.transfer": "xception_mx.model.own_model",
    "xception_mx.model.transfer_inputs": "xception_mx.model.own_model_inputs",
    "xception_mx.conversion.transfer": "xception_mx.conversion.own_model",
    "xception_mx.conversion.transfer.architecture": "xception_mx.conversion.own_model."
                                                    "architecture",
    "xception_mx.conversion.transfer.keras_config": "xception_mx.conversion.own_model."
                                                    "keras_config",
    "xception_mx.conversion.transfer.layers": "xception_mx.conversion.own_model.layers",
    "xception_mx.conversion.transfer.weights": "xception_mx.conversion.own_model.weights",
    "xception_mx.conversion.transfer.to_keras": "xception_mx.conversion.own_model.to_keras",
    "xception_mx.finetune": "xception_mx.training.finetune",
    "xception_mx.launch": "xception_mx.training.distributed.launch",
    "xception_mx.training.launch": "xception_mx.training.distributed.launch",
    "xception_mx.training.devices": "xception_mx.training.distributed.devices",
    "xception_mx.training.remote": "xception_mx.training.distributed.remote",
    "xception_mx.training.pack": "xception_mx.images.pack",
    "xception_mx.pack": "xception_mx.images.pack",
    "xception_mx.padded_training": "xception_mx.training.padded_training",
    "xception_mx.run_dir": "xception_mx.training.run_dir",
    "xception_mx.run_setup": "xception_mx.training.run_setup",
    "xception_mx.validation.keras_side": "xception_mx.keras_side",
    "xception_mx.validation.transfer": "xception_mx.keras_side+"
                                       "xception_mx.conversion.own_model.same_model",
    "xception_mx.train": "xception_mx.training.train",
    "xception_mx.transfer_training": "xception_mx.training.own_model_training",
    "xception_mx.training.transfer_training": "xception_mx.training.own_model_training",
    "xception_mx.serving.checkpoint": "xception_mx.checkpoint.files",
    "xception_mx.serving.labels": "xception_mx.checkpoint.labels",
    "xception_mx.training.optimizers": "xception_mx.training.recipe.optimizers",
    "xception_mx.training.keras_optimizers": "xception_mx.training.recipe.keras_optimizers",
}
# Names renamed with their module ("transfer" became "own model": a user's base + head model,
# not a transfer of weights): new module -> {old name: new name}, given under the old module
# names too.
RENAMED = {
    "xception_mx.model.own_model": {"TransferNet": "OwnModelNet"},
    "xception_mx.training.own_model_training": {
        "build_transfer_network": "build_own_model_network",
        "pretrained_transfer_spec": "pretrained_own_model_spec"},
    "xception_mx.conversion.own_model.architecture": {"Transfer": "OwnModel",
                                                      "read_transfer": "read_own_model"},
    "xception_mx.conversion.own_model.weights": {"convert_transfer": "convert_own_model"},
    "xception_mx.conversion.own_model.to_keras": {
        "build_keras_transfer": "build_keras_own_model"},
    "xception_mx.conversion.own_model.same_model": {
        "read_file_transfer": "read_file_own_model"},
    "xception_mx.keras_side": {"load_transfer_model": "load_own_model",
                               "transfer_probe": "own_model_probe"},
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of ``MOVED`` and loads them as their new modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn("%s moved to %s; the old name goes in xception-mx %s"
                      % (spec.name, new.replace("+", " and "), REMOVED_IN),
                      DeprecationWarning, stacklevel=2)
        parts = new.split("+")
        if len(parts) == 1 and new not in RENAMED:
            return importlib.import_module(new)
        joined = types.ModuleType(spec.name, "%s, now %s" % (spec.name, new))
        for part in parts:
            module = importlib.import_module(part)
            joined.__dict__.update({name: value for name, value in vars(module).items()
                                    if not name.startswith("_")})
            joined.__dict__.update({old: getattr(module, name)
                                    for old, name in RENAMED.get(part, {}).items()})
        if hasattr(importlib.import_module(parts[0]), "__path__"):    # a package: its modules
            joined.__path__ = importlib.import_module(parts[0]).__path__
        return joined

    def exec_module(self, module):
        """The new module ran when it was imported."""


def install():
    """Put the finder in front of the import system (once)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())

