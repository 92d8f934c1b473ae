"""URL map: the REST API under /api/v1/, its schema, the web UI, the admin, the probes and /metrics.

Django's error pages go through controlplane.api: JSON under /api/, HTML elsewhere.
"""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from controlplane import health, metrics
from oncall.api import views as oncall_views
from registry.api import views as registry_views
from rollouts.api import views as rollout_views

# Both `versions/1/artifact` and `versions/1/artifact/` resolve: CI scripts write either.
router = DefaultRouter()
router.trailing_slash = "/?"
router.register("models", registry_views.RegisteredModelViewSet, basename="model")
router.register(r"models/(?P<model_name>[a-z0-9-]+)/versions", registry_views.ModelVersionViewSet,
                basename="version")
router.register(r"models/(?P<model_name>[a-z0-9-]+)/golden-sets", registry_views.GoldenSetViewSet,
                basename="golden-set")
router.register("audit", registry_views.AuditEventViewSet, basename="audit")
router.register("rollouts", rollout_views.RolloutViewSet, basename="rollout")

api_v1 = [
    path("", include(router.urls)),
    re_path(r"^models/(?P<name>[a-z0-9-]+)/aliases/(?P<alias>[a-z0-9-]+)/?$", registry_views.AliasView.as_view(), name="alias"),
    re_path(r"^models/(?P<name>[a-z0-9-]+)/rollback/?$", rollout_views.RollbackView.as_view(), name="rollback"),
    re_path(r"^models/(?P<name>[a-z0-9-]+)/analysis/?$", rollout_views.AnalysisReplayView.as_view(),
            name="analysis"),
    re_path(r"^models/(?P<name>[a-z0-9-]+)/runbook-policy/?$", oncall_views.RunbookPolicyView.as_view(),
            name="runbook-policy"),
    re_path(r"^alerts/alertmanager/?$", oncall_views.AlertmanagerReceiverView.as_view(), name="alertmanager"),
    path("signing-keys/", registry_views.SigningKeysView.as_view(), name="signing-keys"),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("ui.urls")),
    path("rollouts/", include("rollouts.ui.urls")),
    path("", include("registry.ui.urls")),
]

handler400 = "controlplane.api.bad_request"
handler403 = "controlplane.api.permission_denied"
handler404 = "controlplane.api.page_not_found"
handler500 = "controlplane.api.server_error"
