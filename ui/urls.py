"""Sign-in and sign-out for every page of the web UI (Django's auth views, the shell's templates)."""

from django.contrib.auth import views as auth_views
from django.urls import path

app_name = "ui"

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(template_name="ui/login.html",
                                                         next_page="registry_ui:models"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="ui:login"), name="logout"),
]
