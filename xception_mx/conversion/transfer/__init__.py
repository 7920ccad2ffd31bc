"""A user's transfer-learning model (preprocessing -> Xception base -> head),
converted both ways:

- ``keras_config``: the model config in the file, Keras 2 and Keras 3 formats;
- ``layers``: one layer of it as an entry of the network description;
- ``architecture``: the whole chain, as a ``Transfer``;
- ``weights``: each tensor of the file to its MXNet parameter (``convert_transfer``);
- ``same_model``: whether a Keras file holds the model a checkpoint was converted from;
- ``to_keras``: a transfer checkpoint back to a Keras model.
"""
