"""ImageNet's class names, in Keras' index order."""
from xception_mx.checkpoint.labels import imagenet_classes


def test_imagenet_names_are_in_keras_index_order():
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes[0] == ("n01440764", "tench")
    assert classes[281] == ("n02123045", "tabby")
    assert classes[999] == ("n15075141", "toilet tissue")
