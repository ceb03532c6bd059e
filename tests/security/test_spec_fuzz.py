"""Fuzz: the shipped examples, mutated (wrong types, huge, negative, NaN and infinite numbers,
deep nesting, unknown, missing and misplaced fields, wrong ops, cut text), go through the
loaders the app and the CLI use. Each opens or is refused in one sentence (the CLI: exit 2,
one line on stderr); nothing escapes as a traceback, and memory stays under a cap."""
import copy
import io
import json
import math
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import session_file
from core.session import Session
from core.spec import from_document
from tests.security.spec_inputs import example_docs, memory_cap, open_in_app, run_in_cli

DEEP, HUGE = "\x00deep\x00", "\x00huge\x00"  # stand-ins, replaced in the text (json.dumps cannot write them)
DEEP_TEXT = "[" * 100_000 + "]" * 100_000
HUGE_TEXT = "9" * 5000
NASTY = [None, True, False, 0, -1, 1, 3, 2.7, -0.5, 2 ** 53 + 1, 2 ** 63, 2 ** 64, 1e300, -1e300,
         math.nan, math.inf, -math.inf, "", "5", "x" * 300, "float64", "values", "quadratic", "task",
         "every_step", "script", "Adam", "LBFGS", "SparseAdam", "Muon", "OneCycleLR", "StepLR",
         [], [0], [[]], [1, 2.5], ["a"], [[1, 2], [3]], {}, {"a": 1}, {"op": "step"}, DEEP, HUGE]
KEYS = ["colour", "op", "n", "shape", "name", "tensors", "", "layout", "grad"]


def _session_docs() -> dict[str, tuple[dict, bytes]]:
    """Each example saved as a .optimlab: its session.json document and its checkpoint's bytes."""
    out = {}
    for name, doc in example_docs().items():
        with zipfile.ZipFile(io.BytesIO(session_file.pack(Session(*from_document(doc))))) as z:
            out[name] = json.loads(z.read("session.json")), z.read("checkpoint.pt")
    return out


SPEC_DOCS = example_docs()
SESSION_DOCS = _session_docs()


def _paths(node, here=()):
    """Every place in a document: (path, is a dict key)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield here + (k,), True
            yield from _paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield here + (i,), False
            yield from _paths(v, here + (i,))


def _at(doc, path):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw):
    """(file name, bytes): an example as .json or as .optimlab, with 1 to 3 mutations."""
    as_session = draw(st.booleans())
    name = draw(st.sampled_from(sorted(SPEC_DOCS)))
    doc = copy.deepcopy(SESSION_DOCS[name][0] if as_session else SPEC_DOCS[name])
    for _ in range(draw(st.integers(1, 3))):
        places = list(_paths(doc))
        if not places:
            break
        path, keyed = draw(st.sampled_from(places))
        parent = _at(doc, path[:-1])
        how = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        value = copy.deepcopy(draw(st.sampled_from(NASTY)))  # a copy: one shared {} could come to hold itself
        if how == "replace":
            parent[path[-1]] = value
        elif how == "delete" and keyed:
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.sampled_from(KEYS))] = value
    text = json.dumps(doc).replace(json.dumps(DEEP), DEEP_TEXT).replace(json.dumps(HUGE), HUGE_TEXT)
    if draw(st.integers(0, 19)) == 0:  # now and then, text cut short
        text = text[:draw(st.integers(0, len(text) - 1))]
    if not as_session:
        return f"{name}.json", text.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("session.json", text)
        z.writestr("checkpoint.pt", SESSION_DOCS[name][1])
    return f"{name}.optimlab", buf.getvalue()


@settings(max_examples=200, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_examples_open_or_are_refused_in_one_sentence_within_bounded_memory(case):
    name, data = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        with memory_cap():
            msg = open_in_app(path)
            code, err = run_in_cli(path)
    if msg is not None:  # the CLI opens with the same loader: the same sentence
        assert code == 2 and err == f"optimlab: {msg}", (msg, err)
        assert name in msg, msg
