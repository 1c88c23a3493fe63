"""The one exception type whose message is meant for the user."""


class SurgeonError(Exception):
    """Bad input or an impossible request.

    The message is one line that names the problem and the way out; the CLI prints it as it is
    and exits with code 2. Verification failures are not errors: they are reports with
    ``passed == False`` (exit code 1).
    """
