"""The errors we raise on purpose.

Every error a user can cause by what they type or the files they give us is one of these; the
CLI prints it as one line and exits with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ResNetsError(Exception):
    """Base class: a problem with the user's input, never with our code."""


class SpecError(ResNetsError, ValueError):
    """An unknown model name, a bad override, or malformed Table-1 notation."""


class InputError(ResNetsError, ValueError):
    """A tensor or image of the wrong rank, channels, layout or size for the network."""


class WeightsError(ResNetsError, ValueError):
    """A weights or checkpoint file that is unreadable, unsafe or does not fit the model."""


class DataError(ResNetsError, ValueError):
    """A dataset that is missing, empty, corrupt or in a format we do not read."""


class ExportError(ResNetsError, ValueError):
    """An export option combination that cannot work, or an exported file that fails verification."""
