"""Models: the logits adapter every algorithm uses, graph access, intermediate features, and the zoo."""

from .adapter import (HEADS, LogitsModel, LogProbability, NotDifferentiableError, PreActivation, as_logits_model,
                      input_shape_of, to_functional)
from .features import activation_layers, feature_model, penultimate_conv_layer, resolve_layers
from .logits import class_margin, class_score
from .perceptual import PerceptualRegularization
from .tfjs_weights import assign_tfjs_weights, read_tfjs_weights
from .zoo import (cifar10_cnn, cifar10_cnn_robust, cifar10_cnn_ssim_robust, cifar10_perceptual, class_names,
                  imagenet_mobilenet, mnist_cnn, mnist_cnn_robust, mnist_perceptual)

__all__ = ["LogitsModel", "as_logits_model", "to_functional", "input_shape_of", "NotDifferentiableError",
           "PreActivation", "LogProbability", "HEADS", "activation_layers", "feature_model", "penultimate_conv_layer",
           "resolve_layers", "class_margin", "class_score", "read_tfjs_weights", "assign_tfjs_weights", "mnist_cnn",
           "cifar10_cnn", "mnist_cnn_robust", "cifar10_cnn_robust", "cifar10_cnn_ssim_robust", "imagenet_mobilenet",
           "class_names", "PerceptualRegularization", "mnist_perceptual", "cifar10_perceptual"]
