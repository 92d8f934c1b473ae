"""`deployed` means production: a canary gets it when its rollout promotes, and a model has one at a time.

While its rollout is in flight the version is `canary`. A rollout that ends
without promoting returns it to its status before (aborted, failed) or marks it
`rolled_back` (rolled back); a rollback rollout deploys the previous version
when it finishes and marks the one it replaces rolled back.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from controlplane.accounts import issue_token
from controlplane.roles import Role
from registry.choices import VersionStatus
from registry.models import ModelVersion
from rollouts import services
from rollouts.choices import Phase
from tests.factories import set_target

pytestmark = pytest.mark.django_db
S = VersionStatus


@pytest.fixture(autouse=True)
def target(resnet):
    return set_target(resnet)


@pytest.fixture
def production(resnet, make_version):
    return make_version(resnet, "deployed", production=True)


def _deployed(model) -> list[int]:
    return sorted(ModelVersion.objects.filter(model=model, status=S.DEPLOYED).values_list("number", flat=True))


def _statuses(*versions) -> tuple:
    for version in versions:
        version.refresh_from_db()
    return tuple(version.status for version in versions)


def test_a_canary_is_deployed_only_once_its_rollout_promotes(resnet, production, make_version):
    canary = make_version(resnet)
    rollout = services.start_rollout(resnet, canary, actor="ci")
    assert _deployed(resnet) == [production.number] and _statuses(canary) == (S.CANARY,)
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    services.promote(rollout, actor="oncall", full=True)
    assert rollout.phase == Phase.PROMOTING and _deployed(resnet) == [production.number]
    assert _statuses(canary) == (S.CANARY,)
    services.finish_promotion(rollout)
    assert _statuses(production, canary) == (S.APPROVED, S.DEPLOYED)
    assert _deployed(resnet) == [canary.number]


def test_an_aborted_canary_returns_to_approved_and_production_stays_deployed(resnet, production, make_version):
    canary = make_version(resnet)
    rollout = services.start_rollout(resnet, canary, actor="ci")
    services.abort(rollout, actor="oncall", reason="wrong model")
    services.finish_retreat(rollout)
    assert _statuses(production, canary) == (S.DEPLOYED, S.APPROVED)


def test_a_canary_rolled_back_before_promotion_is_rolled_back_never_deployed(resnet, production, make_version):
    canary = make_version(resnet)
    rollout = services.start_rollout(resnet, canary, actor="ci")
    services.transition_rollout(rollout, Phase.PROGRESSING, actor="controller")
    services.finish_retreat(services.rollback(resnet, reason="errors in the canary", actor="oncall"))
    assert _statuses(production, canary) == (S.DEPLOYED, S.ROLLED_BACK)


def test_a_failed_rollout_returns_its_canary_to_approved(resnet, production, make_version):
    canary = make_version(resnet)
    rollout = services.start_rollout(resnet, canary, actor="ci")
    services.promote(rollout, actor="oncall", full=True)
    services.fail(rollout, reason="stable Deployment is gone")
    assert _statuses(production, canary) == (S.DEPLOYED, S.APPROVED)


def test_a_rollback_rollout_deploys_the_previous_version_when_it_finishes(resnet, make_version):
    first, second = make_version(resnet), make_version(resnet)
    for version in (first, second):
        services.finish_promotion(services.promote(services.start_rollout(resnet, version, actor="ci"),
                                                   actor="oncall", full=True))
    assert _statuses(first, second) == (S.APPROVED, S.DEPLOYED)
    rollback = services.rollback(resnet, reason="second is bad", actor="oncall")
    assert (rollback.version, _deployed(resnet)) == (first, [second.number])
    services.finish_promotion(services.promote(rollback, actor="oncall", full=True))
    assert _statuses(first, second) == (S.DEPLOYED, S.ROLLED_BACK)


def test_promotion_leaves_no_other_version_deployed(resnet, production, make_version):
    stray = make_version(resnet, "deployed")  # left deployed by hand, or by an mlcp that deployed at start
    canary = make_version(resnet)
    services.finish_promotion(services.promote(services.start_rollout(resnet, canary, actor="ci"),
                                               actor="oncall", full=True))
    assert _deployed(resnet) == [canary.number]
    assert _statuses(production, stray) == (S.APPROVED, S.APPROVED)


def test_a_canary_rejected_mid_rollout_is_not_silently_deployed(resnet, production, make_version):
    from registry import services as registry
    from registry.models import AuditEvent

    canary = make_version(resnet)
    rollout = services.start_rollout(resnet, canary, actor="ci")
    registry.reject_version(canary, actor="approver", reason="license problem")
    services.finish_promotion(services.promote(rollout, actor="oncall", full=True))
    assert _statuses(production, canary) == (S.APPROVED, S.REJECTED)
    assert AuditEvent.objects.filter(action="rollout.promoted_unshippable", version_number=canary.number).exists()


def test_the_model_page_never_shows_two_deployed_versions(resnet, production, make_version):
    issue_token("viewer-ui", Role.VIEWER)
    browser = Client()
    browser.force_login(get_user_model().objects.get(username="viewer-ui"))

    def deployed_badges() -> int:
        return browser.get(f"/models/{resnet.name}/").content.decode().count('class="badge s-deployed"')

    canary = make_version(resnet)
    rollout = services.start_rollout(resnet, canary, actor="ci")
    assert deployed_badges() == 1
    services.promote(rollout, actor="oncall", full=True)
    assert deployed_badges() == 1
    services.finish_promotion(rollout)
    assert deployed_badges() == 1 and _deployed(resnet) == [canary.number]
