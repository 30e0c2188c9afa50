"""The one exception type for bad user input.

The CLI turns a `UserError` into a single ``error: ...`` line on stderr and exit code 2,
before any training starts. Library code raises it wherever input is validated.
"""


class UserError(ValueError):
    """Bad input from the user: the message names the problem and the fix."""
