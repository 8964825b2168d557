from django.urls import path

from sending import views

app_name = "sending"

urlpatterns = [
    path("", views.overview, name="overview"),
]
