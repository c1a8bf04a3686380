"""Layers, one file each, with Keras's names and arguments."""

from minicnn.layers.activation import Activation
from minicnn.layers.base import Layer
from minicnn.layers.batchnorm import BatchNormalization
from minicnn.layers.conv2d import Conv2D
from minicnn.layers.dense import Dense
from minicnn.layers.dropout import Dropout
from minicnn.layers.flatten import Flatten
from minicnn.layers.input_layer import Input, InputLayer
from minicnn.layers.pooling import MaxPooling2D

# Keras's aliases
Convolution2D, MaxPool2D = Conv2D, MaxPooling2D

__all__ = ["Activation", "BatchNormalization", "Conv2D", "Convolution2D", "Dense", "Dropout",
           "Flatten", "Input", "InputLayer", "Layer", "MaxPool2D", "MaxPooling2D"]
