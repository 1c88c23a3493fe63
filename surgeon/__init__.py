"""surgeon: rewrite saved Keras models so that fine-tuning does what people expect."""
