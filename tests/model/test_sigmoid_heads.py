"""Which heads are binary and multi-label classifiers, decided once
(``model.own_model.sigmoid_units``) for fine-tuning, evaluation and prediction alike: a last
``Dense`` with a sigmoid, or linear with ``Activation("sigmoid")`` after it, or one linear
logit; never another activation."""
import pytest

from xception_mx.model.own_model import is_binary_head, is_multilabel_head, sigmoid_units


def head(units, activation, *after):
    layers = [{"class": "GlobalAveragePooling2D", "name": "pool"},
              {"class": "Dense", "name": "out", "units": units, "activation": activation}]
    for i, (cls, extra) in enumerate(after):
        layers.append(dict({"class": cls, "name": "after%d" % i}, **extra))
    return {"head": layers}


SIGMOID = ("Activation", {"activation": "sigmoid"})
DROPOUT = ("Dropout", {"rate": 0.5})


@pytest.mark.parametrize("spec, units, binary, multilabel", [
    (head(1, "linear"), 1, True, False),                    # the keras.io guide's logit
    (head(1, "sigmoid"), 1, True, False),
    (head(1, "linear", SIGMOID), 1, True, False),
    (head(1, "sigmoid", DROPOUT), 1, True, False),          # Dropout is not at inference
    (head(1, "relu"), None, False, False),
    (head(1, "sigmoid", SIGMOID), None, False, False),
    (head(4, "sigmoid"), 4, False, True),
    (head(4, "linear", SIGMOID), 4, False, True),
    (head(4, "linear"), None, False, False),                # logits of a softmax classifier
    (head(4, "softmax"), None, False, False),
    (head(4, "linear", ("Activation", {"activation": "softmax"})), None, False, False),
    (head(4, "sigmoid", ("BatchNormalization", {})), None, False, False),
])
def test_a_head_is_binary_or_multilabel_by_its_last_dense_and_what_follows_it(
        spec, units, binary, multilabel):
    assert sigmoid_units(spec) == units
    assert is_binary_head(spec) == binary and is_multilabel_head(spec) == multilabel
