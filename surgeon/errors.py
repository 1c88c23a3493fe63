"""The one exception type whose message is meant for the user."""


class SurgeonError(Exception):
    """Bad input or an impossible request.

    The message is one line that names the problem and the way out; the CLI prints it as it is
    and exits with code 2. Verification failures are not errors: they are reports with
    ``passed == False`` (exit code 1).
    """


def one_line(error: BaseException | str, limit: int | None = 300) -> str:
    """An error's text on one line, cut at ``limit`` characters (Keras' messages span many lines).

    Example:
        >>> one_line(ValueError("Input 0 of layer 'dense'\\n    is incompatible"), limit=30)
        "Input 0 of layer 'dense' is in"
    """
    return " ".join(str(error).split())[:limit]
