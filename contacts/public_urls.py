"""Public signup URLs at the site root: hosted pages, the embed's POST target, confirmations."""

from django.urls import path

from contacts.views import signup

app_name = "signup"

urlpatterns = [
    path("f/confirm/<str:token>/", signup.confirm, name="confirm"),
    path("f/<str:public_id>/", signup.signup_page, name="signup_page"),
    path("f/<str:public_id>/thanks/", signup.signup_thanks, name="signup_thanks"),
]
