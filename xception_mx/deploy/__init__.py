"""Deployment: a checkpoint packed for the servers MXNet users serve with (``xception-export``):
Multi Model Server's ``.mar`` (``mms``), with the service it runs (``service``)."""
FORMATS = ("mms",)
