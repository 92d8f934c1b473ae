"""Rollout web UI routes, mounted under /rollouts/."""

from django.urls import path

from rollouts.ui import views

app_name = "rollouts_ui"

urlpatterns = [
    path("", views.rollout_list, name="list"),
    path("<int:pk>/", views.rollout_detail, name="rollout"),
    path("<int:pk>/pause", views.pause, name="pause"),
    path("<int:pk>/resume", views.resume, name="resume"),
    path("<int:pk>/abort", views.abort, name="abort"),
    path("models/<slug:name>/", views.model_rollouts, name="model"),
    path("models/<slug:name>/rollback", views.rollback, name="rollback"),
]
