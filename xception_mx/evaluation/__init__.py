"""A checkpoint scored on the user's own labelled data: the data's classes matched to the
model's by name (``classes``), the evaluation (``run``; the images decoded as the model was
trained: ``xception_mx.images``), the scores (``metrics``), Keras and other precisions on
the same inputs (``peers``), the JSON, CSVs, PNGs and terminal table (``report``).  The
command, ``xception-evaluate``, is ``xception_mx.commands.evaluate``."""
