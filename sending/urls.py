from django.urls import path

from sending import views

app_name = "sending"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("panel/", views.dashboard_panel, name="dashboard_panel"),
    path("domains/add/", views.domain_add, name="domain_add"),
    path("domains/<int:domain_id>/", views.domain_detail, name="domain_detail"),
    path("domains/<int:domain_id>/verify/", views.domain_verify, name="domain_verify"),
    path("domains/<int:domain_id>/rotate/", views.domain_rotate_key, name="domain_rotate_key"),
    path("domains/<int:domain_id>/ed25519/", views.domain_add_ed25519, name="domain_add_ed25519"),
    path("domains/<int:domain_id>/remove/", views.domain_remove, name="domain_remove"),
]
