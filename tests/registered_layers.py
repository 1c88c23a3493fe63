"""A Keras class registered the way a library user registers theirs (imported by the fine-tune check's process)."""

import keras


@keras.saving.register_keras_serializable(package="surgeon_tests")
class Scale(keras.layers.Layer):
    """y = x * factor, with a trainable factor."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer="ones", name="factor")

    def call(self, x):
        return x * self.factor
