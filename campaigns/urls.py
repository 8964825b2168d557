from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("", views.campaign_list, name="campaign_list"),
    path("new/", views.campaign_create, name="campaign_create"),
    path("<int:campaign_id>/", views.campaign_edit, name="campaign_edit"),
    path("<int:campaign_id>/preview/", views.campaign_preview, name="campaign_preview"),
]
