"""How `mlcp rollout` words a rollout: steps counted from 1, traffic from stable to canary, and a finished
rollout's outcome rather than a weight it no longer has. The API's `current_step` stays 0-based."""

from rich.console import Console

from cli.rollout import one_line, render

DEAD_CONTROLLER = {"alive": False, "holder": "pod-a", "last_tick_at": None, "stale_for_s": 412.0}


def _rollout(**fields) -> dict:
    return {"id": 12, "model": "resnet", "version": 3, "stable_version": 2, "kind": "canary", "phase": "progressing",
            "current_step": 1, "weight": 25, "strategy": {"steps": [10, 25, 50, 100]}, "abort_reason": "",
            "retreat_phase": "", "message": "", "last_analysis": None, "controller": {"alive": True}} | fields


def _text(rollout: dict) -> str:
    console = Console(record=True, width=200)
    console.print(render(rollout))
    return console.export_text()


def test_an_active_rollout_reads_stable_to_canary_with_steps_counted_from_one():
    text = _text(_rollout(message="holding: 40 of 200 requests"))
    assert "resnet: stable v2 → canary v3  progressing" in text
    assert "(step 2 of 4)" in text
    assert "canary weight  25%" in text
    assert "holding: 40 of 200 requests" in text
    assert one_line(_rollout()) == "rollout 12 resnet stable v2 → canary v3: progressing, step 2/4 (25%)"


def test_the_last_analysis_names_its_step_from_one():
    analysis = {"at": "2026-11-20T03:14:00Z", "step": 0, "verdict": "pass", "reason": "", "checks": []}
    assert "pass at 2026-11-20T03:14:00Z, step 1/4 (10%)" in _text(_rollout(last_analysis=analysis))


def test_a_rolled_back_rollout_shows_its_outcome_not_a_weight_nor_the_controllers_last_words():
    rolled_back = _rollout(phase="rolled_back", current_step=0, weight=10, abort_reason="burn rate 20x over 5m",
                           retreat_phase="rolled_back", message="holding: inconclusive", controller=DEAD_CONTROLLER,
                           events=[{"new": "rolling_back", "actor": "controller"}])
    text = _text(rolled_back)
    assert "outcome" in text
    assert ("rolled back automatically by the controller at step 1/4 (10%): burn rate 20x over 5m; "
            "all traffic is on stable v2") in text
    assert "canary weight" not in text and "holding: inconclusive" not in text
    assert "No controller" not in text  # an ended rollout needs none
    assert one_line(rolled_back).startswith("rollout 12 resnet stable v2 → canary v3: rolled back automatically")


def test_a_retreating_rollout_says_where_traffic_goes_and_how_it_will_end():
    retreating = _rollout(phase="rolling_back", retreat_phase="aborted", abort_reason="not tonight",
                          events=[{"new": "rolling_back", "actor": "pager"}])
    assert ("rolling back by pager from step 2/4 (25%): not tonight; traffic is going back to stable v2, "
            "then it ends aborted") in _text(retreating)


def test_a_succeeded_rollout_names_production():
    text = _text(_rollout(phase="succeeded", current_step=3))
    assert "succeeded: production is v3" in text and "canary weight" not in text


def test_a_rollback_rollout_reads_back_to_the_earlier_version():
    rollback = _rollout(kind="rollback", version=2, stable_version=3, current_step=0, strategy={"steps": [100]})
    assert one_line(rollback).startswith("rollout 12 resnet stable v3 → back to v2: progressing, step 1/1 (100%)")


def test_a_first_deploy_has_no_stable():
    assert "resnet: no stable → canary v3" in _text(_rollout(stable_version=None))
