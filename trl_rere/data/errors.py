"""The data package's error, in a module of its own so that reading raw files needs nothing of `datasets`."""


class DataError(ValueError):
    """A malformed data file; the message names the file, the data row and the line."""
