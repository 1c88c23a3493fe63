"""One module per CLI command: Typer parameters in, a library call, a table or JSON out.

Nothing here imports TensorFlow at module level: ``surgeon --help`` and ``surgeon inspect`` load
every command module.
"""
