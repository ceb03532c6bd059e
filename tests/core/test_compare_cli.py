"""``optimlab compare``: a comparison made from a session, stepped, saved, reopened and stepped on."""
import pytest

from core import cli, compare_file
from core.compare import config_spec
from core.session import Session
from core.session_file import load_session


def test_compare_makes_steps_saves_and_prints_each_runs_loss_as_alone(tmp_path, capsys):
    out = tmp_path / "ab.optimlab-compare"
    assert cli.main(["compare", "adam_rosenbrock", "--config", "SGD lr=0.0005, momentum=0.9", "--steps", "6",
                     "--at", "3", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    base = load_session(cli.resolve("adam_rosenbrock"))
    sgd = Session(config_spec(base.spec, "SGD", {"lr": 0.0005, "momentum": 0.9}, None))
    sgd.run(6)
    row = next(line for line in text.splitlines() if line.startswith("SGD lr=0.0005 momentum=0.9"))
    assert float(row.split()[-1]) == float(f"{sgd.loss_value():.6g}")  # loss@3 loss@6 (an objective has no acc)
    assert "saved ab.optimlab-compare at step 6" in text
    assert cli.main(["compare", str(out), "--steps", "4"]) == 0
    again = compare_file.load(out)
    sgd.run(4)
    assert again.step_count == 10 and again.runs[1].session.loss_value() == sgd.loss_value()


def test_compare_refuses_a_bad_configuration_with_one_sentence_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "x.optimlab-compare"
    assert cli.main(["compare", "adam_rosenbrock", "--config", "Adam betas=oops", "--steps", "2", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optimlab: Arguments: betas") and "\n" not in err
    assert not out.exists()


def test_compare_prints_the_columns_asked_for_and_names_an_unknown_one(tmp_path, capsys):
    assert cli.main(["compare", "adam_rosenbrock", "--config", "SGD lr=0.0005", "--steps", "5",
                     "--columns", "lr, distance"]) == 0
    head, first, second = capsys.readouterr().out.splitlines()[:3]
    assert head.split()[1:] == ["lr@5", "dist@5"]
    base = load_session(cli.resolve("adam_rosenbrock"))
    adam, sgd = Session(base.spec), Session(config_spec(base.spec, "SGD", {"lr": 0.0005}, None))
    adam.run(5)
    sgd.run(5)
    dist = float((sgd.params["xy"] - adam.params["xy"]).detach().norm())
    assert second.split()[-2:] == ["0.0005", f"{dist:.6g}"] and first.split()[-1] == "0"
    assert cli.main(["compare", "adam_rosenbrock", "--config", "SGD", "--columns", "loss,acc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optimlab: Columns: 'acc' is not one of loss") and "\n" not in err


def test_a_table_step_that_is_not_a_number_is_refused_in_one_sentence(tmp_path, capsys):
    """``--at abc`` had been dropped without a word (the table then showed only the last step)."""
    out = tmp_path / "x.optimlab-compare"
    assert cli.main(["compare", "adam_rosenbrock", "--config", "SGD", "--steps", "4", "--at", "2,abc",
                     "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "optimlab: --at takes step numbers separated by commas, e.g. --at 100,250; 'abc' is not one"
    assert not out.exists()
    assert cli.main(["compare", "adam_rosenbrock", "--config", "SGD", "--steps", "4", "--at", "2, 3"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[1:] == ["loss@2", "loss@3", "loss@4"]


def test_a_configuration_with_a_scheduler_runs_as_the_same_session_alone(capsys):
    from core.compare_cli import parse_config
    from core.spec import SchedulerSpec, SpecError
    base = load_session(cli.resolve("adam_rosenbrock")).spec
    rs = parse_config(base, "SGD lr=0.0005, momentum=0.9 | MultiStepLR milestones=[2, 4], gamma=0.5, every=step")
    sched = SchedulerSpec("MultiStepLR", {"milestones": [2, 4], "gamma": 0.5}, "step")
    assert rs.spec == config_spec(base, "SGD", {"lr": 0.0005, "momentum": 0.9}, sched)
    assert cli.main(["compare", "adam_rosenbrock", "--config", "SGD lr=0.0005 | StepLR step_size=2, every=step",
                     "--steps", "5", "--columns", "lr"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    alone = Session(config_spec(base, "SGD", {"lr": 0.0005}, SchedulerSpec("StepLR", {"step_size": 2}, "step")))
    alone.run(5)
    assert row.split()[-1] == f"{alone.optimizer.param_groups[0]['lr']:.6g}" == "5e-06"
    for bad, words in (("SGD | Steep", "'Steep' after '|' is not a scheduler"),
                       ("SGD | StepLR step_size=2, every=hour", "Invalid scheduler interval 'hour'"),
                       ("SGD | StepLR size=2", "StepLR takes no argument 'size'")):
        with pytest.raises(SpecError, match=words):
            parse_config(base, bad)


def test_arguments_separated_by_spaces_read_as_with_commas():
    """``--config 'SGD lr=0.001 momentum=0.9'`` (as arguments are written on a command line) had
    been refused: "lr must be a number, not '0.001 momentum=0.9'"."""
    from core.compare_cli import parse_config
    from core.spec import SchedulerSpec
    base = load_session(cli.resolve("adam_rosenbrock")).spec
    spaced = parse_config(base, "SGD lr=0.001 momentum=0.9 | MultiStepLR milestones=[2, 4] gamma=0.5 every=step")
    commas = parse_config(base, "SGD lr=0.001, momentum=0.9 | MultiStepLR milestones=[2, 4], gamma=0.5, every=step")
    sched = SchedulerSpec("MultiStepLR", {"milestones": [2, 4], "gamma": 0.5}, "step")
    assert spaced.spec == commas.spec == config_spec(base, "SGD", {"lr": 0.001, "momentum": 0.9}, sched)
    adam = parse_config(base, "Adam betas=(0.8, 0.9) lr = 0.002  eps=1e-6")  # brackets and spaced '=' stay whole
    assert adam.spec == config_spec(base, "Adam", {"betas": (0.8, 0.9), "lr": 0.002, "eps": 1e-6}, None)


def test_a_value_measured_before_the_step_asked_is_marked_and_explained(capsys):
    """Validation runs every 45 steps in the digits example: 'val acc' at step 50 is step 45's,
    and the table says so rather than passing it off as step 50's."""
    assert cli.main(["compare", "digits_mlp", "--config", "Adam", "--steps", "50", "--at", "45",
                     "--columns", "val_accuracy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[1:] == ["acc@45", "acc@50"]
    rows = lines[1:3]
    assert all(not r.split()[-2].endswith("*") and r.split()[-1].endswith("*") for r in rows)
    assert lines[3].startswith("* the last value measured before that step")


def test_measure_every_step_gives_the_norms_and_distance_of_the_steps_asked(capsys):
    """Measured within a budget, a norm or a distance at a step asked can be an earlier step's
    (marked *); with --measure-every-step every value in the table is the step's own."""
    argv = ["compare", "adam_rosenbrock", "--config", "SGD lr=0.0005, momentum=0.9", "--steps", "600",
            "--at", "137,311,599", "--columns", "grad_norm,update_norm,distance"]
    assert cli.main(argv) == 0
    plain = capsys.readouterr().out
    assert "*" in plain  # some values are from earlier steps
    assert cli.main(argv + ["--measure-every-step"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Measured steps ") and "by replaying them" in out[0]
    table = "\n".join(out[1:])
    assert "*" not in table
