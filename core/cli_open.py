"""Opening a session for a headless command that works in this process (``explain``, ``export``).

``optimlab run`` opens its session in a supervised child (``core.headless``); these commands
only read a session and replay it, so they open it here, with the same consent for a task
script (``--trust-script``) and every refusal as one sentence (a SpecError).
"""
from __future__ import annotations

from . import session_file, trust
from .cli import resolve
from .spec import SpecError
from .tasks import TaskError
from .trust import UntrustedScript


def open_session(name: str, trust_script: bool = False):
    """The session in ``name`` (a file or an example's name), replayed to where it was saved."""
    trust.trust_all(trust_script)
    try:
        return session_file.load_session(resolve(name))
    except UntrustedScript as e:
        raise SpecError(f"{e}: pass --trust-script to run it") from None
    except TaskError as e:
        raise SpecError(str(e)) from None
