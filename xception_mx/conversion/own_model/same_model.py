"""Whether a Keras file holds the model a checkpoint was converted from: its architecture,
read with the converter's JSON reader (no code from the file runs), against the checkpoint's
own model's spec, before Keras itself loads the file to be compared or evaluated."""
from xception_mx.errors import InputError
from xception_mx.model.training_only import inference_spec
from xception_mx.model.own_model import branches

from ..keras_reader import read_keras_file
from .architecture import read_own_model
from .keras_config import model_config


def _first_difference(checkpoint, keras_file):
    """Where two ``structure``s first differ, in words."""
    for key in ("preprocess", "base", "head", "branches"):
        ours, theirs = checkpoint[key], keras_file[key]
        if ours == theirs:
            continue
        if isinstance(ours, list):
            for i in range(max(len(ours), len(theirs))):
                a = ours[i] if i < len(ours) else None
                b = theirs[i] if i < len(theirs) else None
                if a != b:
                    return "%s step %d is %s in the file, %s in the checkpoint" % (key, i + 1,
                                                                                   b, a)
        return "%s is %s in the file, %s in the checkpoint" % (key, theirs, ours)
    return "no difference"


def structure(spec):
    """What must agree between a Keras file and a checkpoint: the layers and
    their settings (a Normalization's statistics are compared as outputs, and
    may be in the config or in the weights)."""
    spec = inference_spec(spec)        # checkpoints before #28 did not record the others
    preprocess = [{k: v for k, v in op.items() if k not in ("mean", "variance")}
                  for op in spec["preprocess"]]
    return {"preprocess": preprocess, "base": spec["base"], "head": spec["head"],
            "branches": branches(spec)}


def read_file_own_model(keras_path, checkpoint_spec, prefix):
    """The ``OwnModel`` of ``keras_path``, which must be the checkpoint's model."""
    config = model_config(read_keras_file(keras_path, weights=False))   # Keras reads them
    if config is None:
        raise InputError("%s: a weights-only file; %s is a transfer model, which Keras can "
                         "only run from the whole model: save it with model.save('model.keras')"
                         % (keras_path, prefix))
    own = read_own_model(keras_path, config)
    ours, theirs = structure(checkpoint_spec), structure(own.spec)
    if ours != theirs:
        raise InputError("%s: not the model %s was converted from: %s"
                         % (keras_path, prefix, _first_difference(ours, theirs)))
    return own


