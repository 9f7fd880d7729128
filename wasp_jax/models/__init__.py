"""Flax NNX model definitions (decoders and encoders) and their offline loaders."""
