"""Deployment: a checkpoint packed for the servers MXNet users serve with (``xception-export``):
Multi Model Server's ``.mar`` (``mms``) and SageMaker's ``model.tar.gz`` (``sagemaker``), with
the service they run (``service``, ``sagemaker_service``), and ONNX (``onnx_export``), checked
by ONNX Runtime."""
FORMATS = ("mms", "sagemaker", "onnx")
