"""Exceptions whose message is a one-line explanation a user can act on."""


class MesonetError(Exception):
    """Base class: the CLI prints the message, never a traceback."""


class ModelError(MesonetError):
    """A model name, weights file or model card is unusable."""


class InputError(MesonetError):
    """The paths given cannot be analysed as asked (e.g. media only in sub-folders)."""
