from django.urls import path

from contacts.views import pages

urlpatterns = [
    path("", pages.contact_list, name="contact_list"),
    path("new/", pages.contact_create, name="contact_create"),
    path("bulk/", pages.contact_bulk, name="contact_bulk"),
    path("<int:contact_id>/", pages.contact_detail, name="contact_detail"),
    path("<int:contact_id>/edit/", pages.contact_edit, name="contact_edit"),
    path("<int:contact_id>/delete/", pages.contact_delete, name="contact_delete"),
    path("<int:contact_id>/subscribe/", pages.contact_subscribe, name="contact_subscribe"),
    path(
        "<int:contact_id>/unsubscribe/<int:list_id>/",
        pages.contact_unsubscribe,
        name="contact_unsubscribe",
    ),
    path("lists/", pages.list_index, name="list_index"),
    path("lists/new/", pages.list_create, name="list_create"),
    path("lists/<int:list_id>/edit/", pages.list_edit, name="list_edit"),
    path("lists/<int:list_id>/delete/", pages.list_delete, name="list_delete"),
    path("fields/", pages.field_list, name="field_list"),
    path("fields/new/", pages.field_create, name="field_create"),
    path("fields/<int:field_id>/edit/", pages.field_edit, name="field_edit"),
    path("fields/<int:field_id>/delete/", pages.field_delete, name="field_delete"),
    path("suppressions/", pages.suppression_list, name="suppression_list"),
    path("suppressions/add/", pages.suppression_add, name="suppression_add"),
    path(
        "suppressions/<int:suppression_id>/remove/",
        pages.suppression_remove,
        name="suppression_remove",
    ),
    path("exports/", pages.export_list, name="export_list"),
    path("exports/new/", pages.export_create, name="export_create"),
    path("exports/<int:export_id>/download/", pages.export_download, name="export_download"),
]
