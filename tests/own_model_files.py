"""Users' own models as Keras files: saved by Keras itself, each model built once per test
session, and rewritten as earlier Keras releases wrote them.  The models themselves are
built in ``own_models.py``."""
import functools


def save(model, path):
    """Keras' own save: ``.keras`` archive or legacy full-model ``.h5``."""
    if path.endswith(".keras"):
        model.save(path)
    elif type(model).__module__.startswith("tf_keras"):
        model.save(path, save_format="h5")
    else:
        from keras.src.legacy.saving import legacy_h5_format
        legacy_h5_format.save_model_to_hdf5(model, path, include_optimizer=False)
    return path


@functools.lru_cache(maxsize=None)
def built(builder):
    """``builder()``, built once per test session (Keras builds take seconds)."""
    return builder()


def strip_layer_names(path, out):
    """A copy of the ``.keras`` archive ``path`` whose weight groups record no
    layer names, as earlier Keras 3 releases wrote them."""
    import zipfile
    import h5py
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
            members = archive.namelist()
        with h5py.File(os.path.join(folder, "model.weights.h5"), "r+") as f:
            groups = []
            f.visititems(lambda name, obj: groups.append(obj)
                         if isinstance(obj, h5py.Group) and "name" in obj.attrs else None)
            for group in groups:
                del group.attrs["name"]
        with zipfile.ZipFile(out, "w") as archive:
            for member in members:
                archive.write(os.path.join(folder, member), member)
    return out
