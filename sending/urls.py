from django.urls import path

from sending.views import campaigns, domains

app_name = "sending"

urlpatterns = [
    path("", domains.overview, name="overview"),
    path("panel/", domains.dashboard_panel, name="dashboard_panel"),
    path("domains/add/", domains.domain_add, name="domain_add"),
    path("domains/<int:domain_id>/", domains.domain_detail, name="domain_detail"),
    path("domains/<int:domain_id>/verify/", domains.domain_verify, name="domain_verify"),
    path("domains/<int:domain_id>/rotate/", domains.domain_rotate_key, name="domain_rotate_key"),
    path("domains/<int:domain_id>/ed25519/", domains.domain_add_ed25519, name="domain_add_ed25519"),
    path("domains/<int:domain_id>/remove/", domains.domain_remove, name="domain_remove"),
    # A campaign's send: progress, controls and the deliveries that need a look.
    path(
        "campaigns/<int:campaign_id>/progress/",
        campaigns.campaign_progress,
        name="campaign_progress",
    ),
    path("campaigns/<int:campaign_id>/pause/", campaigns.campaign_pause, name="campaign_pause"),
    path("campaigns/<int:campaign_id>/resume/", campaigns.campaign_resume, name="campaign_resume"),
    path("campaigns/<int:campaign_id>/stop/", campaigns.campaign_stop, name="campaign_stop"),
    path(
        "campaigns/<int:campaign_id>/deliveries/",
        campaigns.campaign_deliveries,
        name="campaign_deliveries",
    ),
    path(
        "campaigns/<int:campaign_id>/deliveries/<int:delivery_id>/",
        campaigns.delivery_detail,
        name="delivery_detail",
    ),
]
