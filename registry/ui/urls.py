"""The registry's web UI pages, mounted at the site root (sign-in and out are the shell's: `ui.urls`)."""

from django.urls import path

from registry.ui import views

app_name = "registry_ui"

urlpatterns = [
    path("", views.model_list, name="models"),
    path("models/<slug:name>/", views.model_detail, name="model"),
    path("models/<slug:name>/compare/", views.compare, name="compare"),
    path("models/<slug:name>/versions/<int:number>/", views.version_detail, name="version"),
    path("models/<slug:name>/versions/<int:number>/approve", views.approve, name="approve"),
    path("models/<slug:name>/versions/<int:number>/reject", views.reject, name="reject"),
]
