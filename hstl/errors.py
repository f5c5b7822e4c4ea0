"""Errors of training, prediction and evaluation runs that the command-line scripts report as one line. They live
here, apart from the heavy modules that raise them, so that reporting a user error does not import torch."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or damaged; the message names its path."""


class NonFiniteError(RuntimeError):
    """Training met a NaN or infinite loss or gradient and `nonfinite_policy` is "stop"."""


class PredictionInputError(ValueError):
    """An argument or an input of prediction or evaluation cannot be used; the message names it, what was expected
    and what came."""
