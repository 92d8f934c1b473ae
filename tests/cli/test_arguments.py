"""How `mlcp` reads its command line: the options every command shares go before or after it."""

import pytest

from cli.main import build_parser


@pytest.mark.parametrize("argv", [
    ["--json", "push", "resnet", "model.onnx", "--wait"],
    ["push", "resnet", "model.onnx", "--wait", "--json"],
    ["rollout", "status", "12", "--json"],
    ["rollout", "--json", "status", "12"],
    ["golden-set", "push", "resnet", "golden.npz", "--json"],
    ["approve", "resnet", "3", "--reason", "evidence read", "--json"],
])
def test_json_is_accepted_before_or_after_any_command(argv):
    assert build_parser().parse_args(argv).json is True


def test_url_and_token_are_accepted_after_the_command_too():
    args = build_parser().parse_args(["rollout", "list", "--url", "http://mlcp:8000", "--token", "t0k"])
    assert (args.url, args.token, args.json) == ("http://mlcp:8000", "t0k", False)


def test_an_option_given_before_the_command_is_not_undone_by_the_command():
    args = build_parser().parse_args(["--json", "--url", "http://mlcp:8000", "models"])
    assert args.json is True and args.url == "http://mlcp:8000" and args.token is None


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_needs_a_reason(decision, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([decision, "resnet", "3"])
    assert exited.value.code == 2
    assert "--reason" in capsys.readouterr().err
