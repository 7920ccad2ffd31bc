"""How a run trains: the Keras file's recipe (``file_recipe``) and the flags, resolved once
(``resolve``) into an optimizer (``optimizers``; Keras' update formulas: ``keras_optimizers``),
a learning-rate schedule (``schedules``, Keras' own) and a loss (``losses``)."""
