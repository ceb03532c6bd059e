"""Shared by the spec tests: the shipped examples as documents, and the app's and CLI's loaders."""
import contextlib
import io
import json
import resource
from pathlib import Path

from core import cli, files, session_file
from core.session import NonFinite, StepError
from core.spec import SpecError

EXAMPLES = Path(__file__).resolve().parents[2] / "resources" / "examples"
# what a load may end in besides a session: a refusal, or a replayed step that fails (shown the same way)
ONE_LINE_ERRORS = (SpecError, files.LoadError, StepError, NonFinite)


def example_docs(max_steps: int = 2) -> dict[str, dict]:
    """Every shipped example's document, its journal's steps cut to ``max_steps`` (fast to replay)."""
    out = {}
    for p in sorted(EXAMPLES.glob("*.json")):
        doc = json.loads(p.read_text())
        for a in doc.get("journal", []):
            if a.get("op") == "step":
                a["n"] = min(a.get("n", 1), max_steps)
        out[p.stem] = doc
    return out


def open_in_app(path: Path) -> str | None:
    """Open ``path`` as the app does: None if it opened, else the one-line refusal (a traceback fails)."""
    try:
        session_file.load_session(path)
    except ONE_LINE_ERRORS as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"{type(e).__name__} of {len(msg.splitlines())} lines: {msg!r}"
        return msg
    return None


def run_in_cli(path: Path, steps: int = 1) -> tuple[int, str]:
    """``optimlab run PATH --steps N``: exit code and stderr; a refusal must be exactly one line."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(["run", str(path), "--steps", str(steps)])
    text = err.getvalue()
    assert "Traceback" not in text, text
    if code != 0:
        assert code == 2 and len(text.splitlines()) == 1, (code, text)
    return code, text.strip()


@contextlib.contextmanager
def memory_cap(extra_bytes: int = 2 << 30):
    """Cap this process's address space at what it uses now plus ``extra_bytes`` (restored after).

    An input that makes the loaders allocate more fails as MemoryError or torch's
    RuntimeError, a traceback the tests report, instead of swapping the machine.
    """
    used = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    old = resource.getrlimit(resource.RLIMIT_AS)
    cap = used + extra_bytes
    if old[1] != resource.RLIM_INFINITY:
        cap = min(cap, old[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)
