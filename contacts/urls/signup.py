from django.urls import path

from contacts.views import signup

urlpatterns = [
    path("forms/", signup.form_list, name="form_list"),
    path("forms/new/", signup.form_new, name="form_new"),
    path("forms/<int:form_id>/", signup.form_detail, name="form_detail"),
    path("forms/<int:form_id>/edit/", signup.form_edit, name="form_edit"),
    path("forms/<int:form_id>/delete/", signup.form_delete, name="form_delete"),
]
