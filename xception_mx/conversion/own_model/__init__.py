"""A user's own model (preprocessing -> Xception base -> head),
converted both ways:

- ``keras_config``: the model config in the file, Keras 2 and Keras 3 formats;
- ``layers``: one layer of it as an entry of the network description;
- ``architecture``: the whole chain, as an ``OwnModel``;
- ``weights``: each tensor of the file to its MXNet parameter (``convert_own_model``);
- ``same_model``: whether a Keras file holds the model a checkpoint was converted from;
- ``to_keras``: an own model's checkpoint back to a Keras model.
"""
