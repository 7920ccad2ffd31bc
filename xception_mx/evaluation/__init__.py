"""``xception-evaluate``: a checkpoint scored on the user's own labelled data.  ``classes``:
the data's classes matched to the model's by name (the images, decoded as the model was
trained: ``xception_mx.images``); ``metrics``: the scores; ``report``: JSON, CSVs, PNGs and
the terminal table; ``run``: the evaluation; ``cli``: the command."""
