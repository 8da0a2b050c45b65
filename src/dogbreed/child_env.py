"""The environment of every Python process we start: nothing imported from the current folder.

``python -m M`` and ``python -c`` put the current folder first on ``sys.path``, so a ``resource.py``
(or ``csv.py``, ``tarfile.py``) in the folder a server, an export or a training job is started from
would run inside it. ``PYTHONSAFEPATH=1`` (Python 3.11+) keeps the folder off the path; unlike
``python -P`` it reaches torchrun's rank processes, which inherit the environment. It is set even
where the user set it otherwise: our children only import installed code.
"""

from __future__ import annotations

from collections.abc import Mapping

VARIABLE = "PYTHONSAFEPATH"


def safe_child_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with ``PYTHONSAFEPATH=1``: a child Python never imports from its working folder."""
    return {**env, VARIABLE: "1"}
