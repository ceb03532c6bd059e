"""The comparison's table (core.compare_table): steps and columns read from what the user
types, and the value at a step is the last one measured at or before it."""
import numpy as np
import pytest

from core.compare import Comparison, RunSpec, config_spec
from core.compare_table import cell, measured_at, parse_columns, parse_steps, value_at
from core.session import Session
from tests.core.test_compare import rosenbrock_base


def test_table_steps_are_read_from_commas_or_spaces_and_a_bad_word_is_named():
    assert parse_steps("100, 10 1000,10") == [10, 100, 1000]
    with pytest.raises(ValueError, match="Steps: 'ten' is not a whole number of steps"):
        parse_steps("5, ten")


def test_the_value_at_a_step_is_the_last_measured_one_at_or_before_it():
    step = np.array([1.0, 2.0, 3.0, 4.0, 8.0])
    acc = np.array([np.nan, 0.5, np.nan, 0.7, 0.9])
    assert value_at(step, acc, 3) == 0.5
    assert value_at(step, acc, 7) == 0.7
    assert value_at(step, acc, 1) is None
    assert value_at(step, None, 3) is None
    assert measured_at(step, acc, 7) == (0.7, 4) and measured_at(step, acc, 8) == (0.9, 8)  # and where


def test_columns_are_read_from_their_names_and_an_unknown_one_is_named():
    assert parse_columns("loss, distance grad_norm loss") == ["loss", "distance", "grad_norm"]
    with pytest.raises(ValueError, match="Columns: 'accuracy' is not one of loss, val_loss"):
        parse_columns("loss accuracy")


def test_every_column_of_a_run_is_its_value_at_the_step():
    base = rosenbrock_base()
    specs = [config_spec(base, "Adam", {"lr": 0.01}, None), config_spec(base, "SGD", {"lr": 0.0005}, None)]
    c = Comparison([RunSpec("", s) for s in specs])
    c.run(6)
    alone = [Session(s) for s in specs]
    for s in alone:
        s.run(6)
    ids = [r.id for r in c.runs]
    hist = c.history()
    xy = [s.params["xy"].detach() for s in alone]
    assert cell(hist, ids, 1, "distance", 6) == pytest.approx(float((xy[1] - xy[0]).norm()), rel=1e-6)
    assert cell(hist, ids, 0, "distance", 6) == 0.0
    assert cell(hist, ids, 1, "lr", 6) == 0.0005
    assert cell(hist, ids, 0, "loss", 6) == pytest.approx(alone[0].loss_value())
    grad = float(alone[1].params["xy"].grad.norm())
    assert cell(hist, ids, 1, "grad_norm", 6) == pytest.approx(grad, rel=1e-6)
    assert cell(hist, ids, 0, "val_loss", 6) is None  # an objective is not evaluated
