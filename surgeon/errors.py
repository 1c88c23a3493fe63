"""The one exception type whose message is meant for the user."""


class SurgeonError(Exception):
    """Bad input or an impossible request.

    The message is one line that names the problem and the way out; the CLI prints it as it is
    and exits with code 2. Verification failures are not errors: they are reports with
    ``passed == False`` (exit code 1).
    """


def did_you_mean(name: str, known) -> str:
    """``"; did you mean 'conv4_block6_out'?"`` for the known names closest to a mistyped one, or "".

    Paths are compared by their last part too, so a bare name finds the layer inside a nested model.

    Example:
        >>> did_you_mean("conv4_block6_ot", ["conv4_block6_out", "conv4_block5_out", "pool"])
        "; did you mean 'conv4_block6_out' or 'conv4_block5_out'?"
    """
    import difflib

    known = list(dict.fromkeys(known))
    by_leaf: dict[str, list[str]] = {}
    for path in known:
        by_leaf.setdefault(path.rpartition("/")[2], []).append(path)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    for leaf in difflib.get_close_matches(name.rpartition("/")[2], list(by_leaf), n=3, cutoff=0.6):
        close += [path for path in by_leaf[leaf] if path not in close]
    close = close[:3]
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def one_line(error: BaseException | str, limit: int | None = 300) -> str:
    """An exception's (or a text's) message on one line, at most ``limit`` characters, cut only
    between words (Keras' messages run to pages; a cut mid-word reads as a typo); ``None``: no limit.

    Example:
        >>> one_line("Please ensure that components\\n returned by `get_config()` are explicitly deserialized", 60)
        'Please ensure that components returned by `get_config()` ...'
    """
    import textwrap

    if limit is None:
        return " ".join(str(error).split())
    return textwrap.shorten(str(error), width=limit, placeholder=" ...") or " ".join(str(error).split())[:limit]
