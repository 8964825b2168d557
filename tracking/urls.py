from django.urls import path

from tracking import dashboard, views

app_name = "tracking"

urlpatterns = [
    path("", views.reports, name="reports"),
    path("campaigns/<int:campaign_id>/", views.campaign_report, name="campaign_report"),
    # The dashboard's deliverability panel (tracking/dashboard.py), loaded with hx-get.
    path("panel/", dashboard.dashboard_panel, name="dashboard_panel"),
]
