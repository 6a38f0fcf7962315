"""The one exception type for bad user input.

Everything that a user can get wrong (a NaN in the data, an unknown option, a non-positive prior scale) raises
:class:`PyrozooError` *before* any work starts. The CLI turns it into a one-line message and a non-zero exit.
"""


class PyrozooError(ValueError):
    """Bad input: the message names the argument, what was expected and what came."""
