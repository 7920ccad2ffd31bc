"""The training recipe a Keras file was compiled with: Keras 3's ``compile_config`` (in a
``.keras`` archive's ``config.json``) or the ``training_config`` attribute of a full-model
``.h5`` (Keras 2, and Keras 3's legacy format), read as JSON and recorded as it is in the
checkpoint's meta (``recipe``), for xception-finetune to train with
(``training/recipe/file_recipe.py`` interprets it)."""
import json

from .errors import ConversionError
from .own_model.keras_config import model_config


def compiled_recipe(keras_file):
    """``{"optimizer", "loss", "loss_weights"}`` as the file saved them (an optimizer: its
    ``class_name`` and ``config``), or ``None`` for a file saved uncompiled or weights only."""
    text = keras_file.attrs.get("training_config")
    if text:
        try:
            saved = json.loads(text)
        except ValueError as exc:
            raise ConversionError("%s: the training_config attribute is not readable JSON (%s)"
                                  % (keras_file.path, exc))
        optimizer = saved.get("optimizer_config") if isinstance(saved, dict) else None
    else:
        config = model_config(keras_file) if keras_file.attrs.get("model_config") else None
        saved = (config or {}).get("compile_config")
        optimizer = saved.get("optimizer") if isinstance(saved, dict) else None
    if not isinstance(saved, dict) or (optimizer is None and saved.get("loss") is None):
        return None
    return {"optimizer": _plain(optimizer), "loss": saved.get("loss"),
            "loss_weights": saved.get("loss_weights")}


def _plain(optimizer):
    """An optimizer entry as ``{"class_name", "config"}`` (a string name as Keras' default
    configuration of that class)."""
    if isinstance(optimizer, str):
        return {"class_name": optimizer, "config": {}}
    if isinstance(optimizer, dict):
        return {"class_name": optimizer.get("class_name"),
                "config": optimizer.get("config") or {}}
    return None
