"""``--early-stopping`` and ``--reduce-lr-on-plateau`` decide as Keras' ``EarlyStopping(
monitor="val_loss", restore_best_weights=True)`` and ``ReduceLROnPlateau(monitor="val_loss")``
in ``fit`` on the same pixels: the validation losses improve at the same epochs, the same
epochs run at the same learning rates, and the export is the epoch of the lowest validation
loss.  (That the losses and weights themselves are ``fit``'s is test_file_recipe.py's.)"""
import csv

import mxnet as mx
import numpy as np
import pytest

import own_models
from conftest import assert_bad_input, run_tool
from recipe_runs import frozen_base_model, load_saved, pixels
from shapes_dataset import write_shapes_dataset

EPOCHS, PATIENCE, FACTOR_LR, PLATEAU = 8, 2, 0.5, 1


def sgd(k):
    return dict(optimizer=k.optimizers.SGD(0.2, momentum=0.9),
                loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))


def keras_fit(keras, model, data, log_dir):
    """``fit``'s history with both callbacks (and Keras' TensorBoard's event files in
    ``log_dir``)."""
    x, y = pixels(data / "train")
    xv, yv = pixels(data / "val")
    model.compile(**sgd(keras))
    return model.fit(x, y, batch_size=len(x), epochs=EPOCHS, shuffle=False, verbose=0,
                     validation_data=(xv, yv), callbacks=[
                         keras.callbacks.EarlyStopping(patience=PATIENCE,
                                                       restore_best_weights=True),
                         keras.callbacks.ReduceLROnPlateau(factor=FACTOR_LR,
                                                           patience=PLATEAU),
                         keras.callbacks.TensorBoard(str(log_dir))]).history


def events(folder):
    """``{tag: [(step, value)]}`` of the event files in ``folder``, read by TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    reader = EventAccumulator(str(folder))
    reader.Reload()
    found = {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
             for tag in reader.Tags()["scalars"]}
    found.update({tag: [] for tag in reader.Tags()["tensors"]})      # tf.summary's (Keras')
    return found


def improvements(losses, min_delta):
    """Per epoch, whether its loss is below the best before it by more than ``min_delta``:
    what both callbacks decide on (the same on both sides, or they would decide apart)."""
    return [i == 0 or loss + min_delta < min(losses[:i]) for i, loss in enumerate(losses)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("callbacks")
    write_shapes_dataset(str(folder / "train"), per_class=4, seed=2, size=(80, 80))
    write_shapes_dataset(str(folder / "val"), per_class=3, seed=5, size=(80, 80))
    return folder


def test_early_stopping_and_plateau_decide_as_keras_callbacks(data, tmp_path):
    keras = own_models.import_keras()
    model = frozen_base_model(keras, None)
    model.compile(**sgd(keras))
    path = own_models.save(model, str(tmp_path / "m.keras"))
    assert run_tool("keras2mxnet", path, "-o", tmp_path / "mx").returncode == 0
    result = run_tool("xception-finetune", data / "train", "--val", data / "val", "--out",
                      tmp_path / "run", "--pretrained", tmp_path / "mx", "--epochs", EPOCHS,
                      "--batch-size", "12", "--pipeline-augmentation", "off", "--workers",
                      "0", "--early-stopping", PATIENCE, "--reduce-lr-on-plateau",
                      "%g,%d" % (FACTOR_LR, PLATEAU), "--tensorboard", tmp_path / "tb")
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = keras_fit(keras, load_saved(keras, path), data, tmp_path / "keras-tb")
    assert len(theirs["val_loss"]) < EPOCHS                   # it does stop early
    assert len(set(theirs["learning_rate"])) > 1              # and reduces the rate

    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    ours = [float(r["val_loss"]) for r in rows]
    assert improvements(ours, 0.0) == improvements(theirs["val_loss"], 0.0)
    assert improvements(ours, 1e-4) == improvements(theirs["val_loss"], 1e-4)
    assert len(rows) == len(theirs["val_loss"]), result.stdout
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx(theirs["learning_rate"],
                                                                      rel=1e-7)
    best = int(np.argmin(theirs["val_loss"]))                # restore_best_weights' epoch
    exported = mx.nd.load(str(tmp_path / "run" / "model-0000.params"))
    trained = mx.nd.load(str(tmp_path / "run" / ("epoch-%04d.params" % (best + 1))))
    for name in ("fc1_weight", "out_weight", "out_bias"):
        assert np.array_equal(exported["arg:" + name].asnumpy(), trained[name].asnumpy())
    assert "early stopping after epoch %d" % len(rows) in result.stdout

    # --tensorboard: what metrics.csv holds, per epoch, under the names and in the folders of
    # Keras' TensorBoard callback (read back by TensorBoard's own reader)
    for part, prefix in (("train", ""), ("validation", "val_")):
        ours_events, keras_events = events(tmp_path / "tb" / part), \
            events(tmp_path / "keras-tb" / part)
        assert {t for t in keras_events if t.startswith("epoch_")} <= set(ours_events)
        for tag, column in (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy")) + ((
                ("epoch_learning_rate", "learning_rate"),) if part == "train" else ()):
            assert ours_events[tag] == [(int(r["epoch"]), pytest.approx(
                float(r[prefix + column] if column != "learning_rate" else r[column]),
                rel=1e-6)) for r in rows], tag


@pytest.mark.parametrize("flags, fragment", [
    (["--early-stopping", "2"], "--early-stopping monitors the validation loss"),
    (["--reduce-lr-on-plateau", "0.5"], "expected FACTOR,PATIENCE"),
    (["--reduce-lr-on-plateau", "0.5,2", "--val-split", "0.25"],
     "add --lr-schedule constant"),
    (["--tensorboard", __file__],
     "--tensorboard %s: is a file; name a folder to write into" % __file__),
])
def test_a_callback_that_cannot_act_is_refused_in_one_line(flags, fragment, data, tmp_path):
    result = run_tool("xception-finetune", data / "train", "--out", tmp_path / "run", *flags)
    assert_bad_input(result, fragment)
    assert not (tmp_path / "run").exists()


SEQUENCES = [[1.0, 0.9, 0.95, 0.9, 0.89995, 0.5, 0.6, 0.7, 0.4],
             [2.0, 2.0, 1.99995, 1.9, 1.95, 1.96, 1.97, 1.98],
             [0.3, 0.2, 0.2, 0.2, 0.1, 0.1]]


@pytest.mark.parametrize("losses", SEQUENCES)
def test_the_callbacks_decide_as_keras_on_the_same_validation_losses(losses):
    """Keras' own callbacks, driven with the same validation losses (ties, changes within
    ``min_delta``): the same stopping epoch, best epoch and learning rates."""
    from xception_mx.training.callbacks import early_stopping, reduce_on_plateau, start_state
    keras = own_models.import_keras()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    stopping = keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    plateau = keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=1)
    for callback in (stopping, plateau):
        callback.set_model(model)
        callback.on_train_begin()
    state, lr, rates, stopped = start_state(), 0.1, [], None
    for epoch, loss in enumerate(losses):
        rates.append((float(model.optimizer.learning_rate.numpy()), lr))
        stopping.on_epoch_end(epoch, {"val_loss": loss})
        plateau.on_epoch_end(epoch, {"val_loss": loss})
        lr = reduce_on_plateau(state["plateau"], 0.5, 1, loss, lr)
        if early_stopping(state["stopping"], 2, epoch, loss) and stopped is None:
            stopped = epoch
        if model.stop_training:
            break
    assert stopped == (stopping.stopped_epoch or None)
    assert state["stopping"]["best_epoch"] == stopping.best_epoch
    assert [ours for _, ours in rates] == pytest.approx([k for k, _ in rates], rel=1e-7)
