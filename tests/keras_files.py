"""Keras files in the layouts older Keras versions wrote, made from files the
installed Keras 3 writes (Keras 1 and 2 cannot be installed next to it).

Each helper copies a legacy ``.h5`` written by Keras 3's legacy writer and
renames layers and weights the way the older version named them; the tensors
are untouched.
"""
import random
import re
import shutil

import h5py
import numpy as np

RESIDUAL_CONV = re.compile(r"^conv2d(_\d+)?$")
RESIDUAL_BN = re.compile(r"^batch_normalization(_\d+)?$")


def _auto_index(name):
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def keras2_layer_name(name):
    """Keras 2.0 numbered auto-named layers from 1: ``conv2d_1``..``conv2d_4``."""
    if RESIDUAL_CONV.match(name):
        return "conv2d_%d" % (_auto_index(name) + 1)
    if RESIDUAL_BN.match(name):
        return "batch_normalization_%d" % (_auto_index(name) + 1)
    return name


def keras1_layer_name(name):
    """Keras 1.2: ``convolution2d_N`` and ``batchnormalization_N``."""
    if RESIDUAL_CONV.match(name):
        return "convolution2d_%d" % (_auto_index(name) + 1)
    if RESIDUAL_BN.match(name):
        return "batchnormalization_%d" % (_auto_index(name) + 1)
    return name


KERAS1_WEIGHT = {"kernel": "W", "bias": "b", "moving_mean": "running_mean",
                 "moving_variance": "running_std"}


def keras2_weight_name(layer, weight):
    """``block1_conv1/kernel:0``."""
    return "%s/%s:0" % (layer, weight.rsplit("/", 1)[-1])


def keras1_weight_name(layer, weight):
    """``block1_conv1_W:0``, ``batchnormalization_1_running_std:0``..."""
    role = weight.rsplit("/", 1)[-1]
    return "%s_%s:0" % (layer, KERAS1_WEIGHT.get(role, role))


def rewrite_legacy(src, dst, layer_name=lambda n: n, weight_name=None, keras_version=None,
                   split_layer_names=0, shuffle_seed=None):
    """Copy the legacy weights file ``src`` to ``dst`` with renamed layers and
    weights, ``layer_names`` split into ``split_layer_names`` attributes, and
    optionally the layer order shuffled."""
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        names = [n.decode() if isinstance(n, bytes) else n for n in fin.attrs["layer_names"]]
        new_names = []
        for name in names:
            new = layer_name(name)
            new_names.append(new)
            group = fout.create_group(new)
            weight_names = []
            for w in fin[name].attrs["weight_names"]:
                w = w.decode() if isinstance(w, bytes) else w
                new_w = weight_name(new, w) if weight_name else w.replace(name, new, 1)
                group.create_dataset(new_w, data=fin[name][w][()])
                weight_names.append(new_w.encode())
            group.attrs["weight_names"] = np.array(weight_names, dtype="S")
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(new_names)
        encoded = np.array([n.encode() for n in new_names], dtype="S")
        if split_layer_names:
            for i, chunk in enumerate(np.array_split(encoded, split_layer_names)):
                fout.attrs["layer_names%d" % i] = chunk
        else:
            fout.attrs["layer_names"] = encoded
        fout.attrs["backend"] = b"tensorflow"
        version = keras_version or fin.attrs["keras_version"]
        fout.attrs["keras_version"] = version.encode() if isinstance(version, str) else version
    return dst


def strip_keras3_names(src, dst):
    """A Keras 3 ``.weights.h5`` as Keras versions that recorded no layer names
    wrote it."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        for group in f["layers"].values():
            if "vars" in group and "name" in group["vars"].attrs:
                del group["vars"].attrs["name"]
    return dst


def replace_dataset(path, dataset_path, new_value):
    """Overwrite one dataset of an HDF5 file in place (shape may change)."""
    with h5py.File(path, "r+") as f:
        del f[dataset_path]
        f.create_dataset(dataset_path, data=new_value)


def save_with_keras2(model, path, whole_model):
    """``model``'s weights in Keras 2's own Xception, saved by Keras 2 itself
    (tf-keras): ``save_weights`` to legacy HDF5, or with ``whole_model`` the
    whole model, as the ``.h5`` or (``path`` ending in ``.keras``) the
    ``.keras`` archive Keras 2 writes."""
    from xception_mx.keras_side import import_keras
    import_keras()                                # MXNet first, TensorFlow quiet
    import tf_keras
    keras2 = tf_keras.applications.Xception(weights=None, classifier_activation=None)
    keras2.set_weights(model.get_weights())
    if whole_model:
        keras2.save(path, save_format="keras" if path.endswith(".keras") else "h5")
    else:
        keras2.save_weights(path, save_format="h5")
    return path
