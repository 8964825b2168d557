"""Public campaign URLs at the site root: the web version and the media library's images.
Each carries a signed token instead of a session."""

from django.urls import path

from campaigns.views import media, web_version

app_name = "campaigns_public"

urlpatterns = [
    path("v/<str:token>", web_version.web_version, name="web_version"),
    path("m/<str:token>/<str:name>", media.image_public, name="image_public"),
]
