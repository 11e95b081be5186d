from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboards import views
from monitor import links

links.register_converters()

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.overview, name="overview"),
    path("clusters/", views.clusters, name="clusters"),
    path("clusters/<str:cluster>/", views.cluster, name="cluster"),
    # Group and topic names are any text (``/``, line breaks): ``name:`` matches them all.
    path("clusters/<str:cluster>/groups/<name:group>/", views.group, name="group"),
    path("clusters/<str:cluster>/topics/<name:topic>/", views.topic, name="topic"),
    path("", include("dashboards.urls_alerts")),
    path("", include("dashboards.urls_flow")),
]
