"""Training on the channel-padded network while everything on disk keeps Keras' shapes.

The training network is built with ``channel_block=16`` (728 -> 736 channels, see padding.py
for why that is faster and why it computes the same function).  It computes Keras' function
only while the padded slices of its parameters are zero, so:

- parameters come in with Keras' shapes (a converted checkpoint, a resumed epoch) and are
  grown with zeros (a BatchNorm's padded moving variance with 1);
- before every update the gradients of the padded slices are multiplied by zero.  They are
  zero anyway (zero weights see zero activations and pass back zero gradients), the masks
  make it hold whatever an operator's backward does: with a zero gradient, a zero weight
  stays zero under SGD, Nesterov momentum, Adam and weight decay alike (their states start
  at zero and stay there);
- parameters and trainer states go out (checkpoints, exports, statistics dumps) cut back to
  Keras' shapes, so a run can resume padded or not, on another machine.

``ShapeMap`` is the identity when nothing is padded: one code path for both.
"""
import pickle

import mxnet as mx

from xception_mx.errors import make_sure
from xception_mx.model.padding import (BLOCK, PADDED_VARIANCE, cut_array, grown,
                                       resolve_padding)

RUNNING_VARIANCE = "_running_var"


def fill_of(name):
    """What a padded slice of parameter ``name`` holds: ``PADDED_VARIANCE`` for a BatchNorm's
    moving variance, 0 for everything else."""
    return PADDED_VARIANCE if name.endswith(RUNNING_VARIANCE) else 0.0


def channel_block(choice, gpus=False):
    """``--channel-padding`` (auto / on / off) -> the ``channel_block`` a network is built
    with: ``padding.BLOCK`` or ``None``.  ``auto`` on GPUs is off (the padding is for
    oneDNN's CPU kernels)."""
    if gpus and choice == "auto":
        return None
    return BLOCK if resolve_padding(choice, training=True) else None


def _updaters(trainer):
    """The updaters holding ``trainer``'s states: the kvstore's when it updates, else one
    per device (what ``Trainer.save_states``/``load_states`` read and set)."""
    return [trainer._kvstore._updater] if trainer._update_on_kvstore else trainer._updaters


def padded_network(build, block):
    """``(net, shape_map)``: ``build(block)``, and its map to Keras' shapes (from
    ``build(None)``; the identity when ``block`` is None)."""
    net = build(block)
    return net, ShapeMap(net, build(None) if block else net)


class ShapeMap:
    """Keras' shape of every parameter of a (possibly padded) Gluon network ``net``, read
    off ``keras_net``, the same network built unpadded (never initialised).  Only parameters
    whose Keras shape is fully known and differs are padded."""

    def __init__(self, net, keras_net):
        keras_shapes = {n: tuple(p.shape) for n, p in keras_net.collect_params().items()}
        self.padded = {name: keras_shapes[name] for name, param in net.collect_params().items()
                       if 0 not in keras_shapes[name] and tuple(param.shape)
                       != keras_shapes[name]}
        self._masks = {}

    def __bool__(self):
        return bool(self.padded)

    def keras_shape(self, name, param):
        return self.padded.get(name, tuple(param.shape))

    def set_values(self, net, values, where, names=None):
        """Fill ``net``'s parameters (those of ``names``, default all) from ``{name: NDArray}``
        in Keras' shapes (``where`` names the source in errors)."""
        params = net.collect_params()
        for name in (names or params.keys()):
            param = params[name]
            make_sure(name in values, "%s: the checkpoint lacks %s", where, name)
            value, shape = values[name], self.keras_shape(name, param)
            make_sure(tuple(value.shape) == shape, "%s: %s has shape %s, the network needs %s",
                      where, name, tuple(value.shape), shape)
            param.set_data(grown(value, param.shape, fill_of(name)))

    def values(self, net, names=None):
        """``{name: NDArray on the CPU}`` in Keras' shapes (the first device's copy: all
        devices hold the same parameters)."""
        params = net.collect_params()
        return {name: cut_array(params[name].list_data()[0].copyto(mx.cpu()),
                                self.keras_shape(name, params[name]))
                for name in (names or params.keys())}

    def save_params(self, net, path):
        """``net``'s parameters in Keras' shapes, as ``ParameterDict.save`` writes them."""
        mx.nd.save(path, self.values(net))

    def load_params(self, net, path):
        self.set_values(net, mx.nd.load(path), path)

    def mask_gradients(self, net):
        """Zero the gradients of every padded slice, on every device."""
        params = net.collect_params()
        for name in self.padded:
            param = params[name]
            if param.grad_req == "null":
                continue
            for grad in param.list_grad():
                key = (name, str(grad.context), grad.dtype)
                if key not in self._masks:
                    mask = grown(mx.nd.ones(self.padded[name]), grad.shape)
                    self._masks[key] = mask.astype(grad.dtype).as_in_context(grad.context)
                grad *= self._masks[key]

    def _map_states(self, trainer, states, change, every=False):
        """``{updater index: state}`` with every array of a padded parameter's state (of
        every parameter's, with ``every``) passed through ``change(array, parameter)``."""
        params = trainer._params                  # the updater's index -> parameter

        def each_array(state, param):
            if isinstance(state, mx.nd.NDArray):
                return change(state, param)
            if isinstance(state, (tuple, list)):
                return type(state)(each_array(s, param) for s in state)
            return state
        return {index: each_array(state, params[index])
                if every or params[index].name in self.padded else state
                for index, state in states.items()}

    def save_states(self, trainer, path):
        """What ``trainer.save_states`` writes (the pickled ``(states, optimizer)`` of the
        first device's updater), with every array on the CPU and those of padded parameters
        in Keras' shapes.  A state pickled on a GPU would load back onto that GPU, on every
        rank of a job; loading puts CPU states where their parameters are."""
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        updater = _updaters(trainer)[0]

        def keras_shaped_on_cpu(state, param):
            if param.name in self.padded and state.shape == param.shape:
                state = cut_array(state, self.padded[param.name])
            return state.as_in_context(mx.cpu())
        states = self._map_states(trainer, updater.states, keras_shaped_on_cpu, every=True)
        with open(path, "wb") as f:
            f.write(pickle.dumps((states, updater.optimizer)))

    def load_states(self, trainer, path):
        """``trainer.load_states`` from a file in Keras' shapes, then the states of padded
        parameters grown to the network's shapes (in memory: nothing is written)."""
        trainer.load_states(path)
        if not self:
            return
        for updater in _updaters(trainer):
            updater.states = self._map_states(trainer, updater.states, lambda state, param: (
                grown(state, param.shape) if state.shape == self.padded[param.name]
                else state))
            updater.states_synced = dict.fromkeys(updater.states, False)
