"""``dogbreed``: the command line; :mod:`.main` dispatches to one module per group of commands."""
