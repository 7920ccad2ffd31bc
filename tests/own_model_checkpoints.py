"""The users' own models the command tests share (issue #12), each saved by Keras and
converted once per test process, when a test first asks for it: the ``converted`` fixture
(``conftest.py``) of the parity, predict, fine-tuning and mxnet2keras tests."""
import own_models
from xception_mx.conversion import convert_file

MODELS = {   # name: (builder, suffix); input convention and output in the comment
    "nested": (own_models.nested, ".keras"),                 # raw pixels, softmax
    "keras2_nested": (own_models.keras2_nested, ".h5"),      # raw pixels, TFOpLambda
    "keras2_archive": (own_models.keras2_nested, ".keras"),  # the same, tf-keras' .keras
    "keras2_flattened": (own_models.keras2_flattened, ".h5"),  # [-1, 1], sigmoid
    "keras2_resizing": (own_models.keras2_resizing, ".h5"),  # 100x130 resized to 71x71
}


class Converted:
    """``{name: (Keras file, checkpoint prefix)}`` for the names of ``MODELS``, in
    ``folder``: each model is built, saved and converted the first time it is looked up
    (the test files that share them may run in different processes, each converting only
    what its tests use)."""

    def __init__(self, folder):
        self.folder = folder
        self.files = {}

    def __getitem__(self, name):
        if name not in self.files:
            builder, suffix = MODELS[name]
            path = own_models.save(own_models.built(builder),
                                   str(self.folder / (name + suffix)))
            convert_file(path, str(self.folder / name))
            self.files[name] = (path, str(self.folder / name))
        return self.files[name]
