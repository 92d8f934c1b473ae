"""Web UI routes, mounted at the site root; login and logout use Django's auth views."""

from django.contrib.auth import views as auth_views
from django.urls import path

from registry.ui import views

app_name = "ui"

urlpatterns = [
    path("", views.model_list, name="models"),
    path("models/<slug:name>/", views.model_detail, name="model"),
    path("models/<slug:name>/versions/<int:number>/", views.version_detail, name="version"),
    path("models/<slug:name>/versions/<int:number>/approve", views.approve, name="approve"),
    path("models/<slug:name>/versions/<int:number>/reject", views.reject, name="reject"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="registry/ui/login.html",
                                                         next_page="ui:models"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="ui:login"), name="logout"),
]
