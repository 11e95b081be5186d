from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboards import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.overview, name="overview"),
    path("clusters/", views.clusters, name="clusters"),
    path("clusters/<str:cluster>/", views.cluster, name="cluster"),
    # Group names may contain '/', hence ``path:``.
    path("clusters/<str:cluster>/groups/<path:group>/", views.group, name="group"),
    path("clusters/<str:cluster>/topics/<str:topic>/", views.topic, name="topic"),
    path("", include("dashboards.urls_alerts")),
    path("", include("dashboards.urls_flow")),
]
