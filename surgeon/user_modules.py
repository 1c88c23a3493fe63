"""``--import MODULE``: the user's own modules, imported before any model is loaded.

A model holding layers the user wrote (``@keras.saving.register_keras_serializable``) can only be
rebuilt once the module defining them has run and registered them. Importing a module the user
names is their decision (unlike code stored in a file, which needs ``--allow-code``). The module
is looked up on the import path with the working directory appended, so ``--import my_layers``
finds ``./my_layers.py`` as ``python -c "import my_layers"`` would; the fine-tune check's process
inherits this path and imports the same modules (``finetune_check._custom_objects``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable

from surgeon.errors import SurgeonError


def import_user_modules(names: Iterable[str] | None) -> list[str]:
    """Import each module in ``names``; one-line SurgeonError if one is missing or raises.

    Example:
        >>> import_user_modules(["json"])
        ['json']
    """
    imported = []
    for name in names or ():
        _put_working_directory_on_path()
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and name.startswith(error.name):
                raise SurgeonError(
                    f"--import {name}: no module named '{name}' on the import path or in {os.getcwd()}; "
                    "give a module name (my_layers for ./my_layers.py), not a file path"
                ) from None
            raise SurgeonError(f"--import {name}: the module imports '{error.name}', which is not installed") from None
        except Exception as error:  # the user's module raised while it ran: say where, not a traceback
            text = " ".join(str(error).split())[:200]
            raise SurgeonError(f"--import {name}: the module raised {type(error).__name__}: {text}; fix the module") from None
        imported.append(name)
    return imported


def _put_working_directory_on_path() -> None:
    # Appended, not prepended: a file in the working directory must not shadow installed packages.
    # As an absolute path even when "" (python -c) is on the path: the fine-tune check's process
    # gets this path list, and runs elsewhere with -P.
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)
