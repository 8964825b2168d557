from django.urls import path

from contacts.views import contacts, exports, lists, suppressions

urlpatterns = [
    path("", contacts.contact_list, name="contact_list"),
    path("new/", contacts.contact_create, name="contact_create"),
    path("bulk/", contacts.contact_bulk, name="contact_bulk"),
    path("<int:contact_id>/", contacts.contact_detail, name="contact_detail"),
    path("<int:contact_id>/edit/", contacts.contact_edit, name="contact_edit"),
    path("<int:contact_id>/delete/", contacts.contact_delete, name="contact_delete"),
    path("<int:contact_id>/subscribe/", contacts.contact_subscribe, name="contact_subscribe"),
    path(
        "<int:contact_id>/unsubscribe/<int:list_id>/",
        contacts.contact_unsubscribe,
        name="contact_unsubscribe",
    ),
    path("lists/", lists.list_index, name="list_index"),
    path("lists/new/", lists.list_create, name="list_create"),
    path("lists/<int:list_id>/edit/", lists.list_edit, name="list_edit"),
    path("lists/<int:list_id>/delete/", lists.list_delete, name="list_delete"),
    path("fields/", lists.field_list, name="field_list"),
    path("fields/new/", lists.field_create, name="field_create"),
    path("fields/<int:field_id>/edit/", lists.field_edit, name="field_edit"),
    path("fields/<int:field_id>/delete/", lists.field_delete, name="field_delete"),
    path("suppressions/", suppressions.suppression_list, name="suppression_list"),
    path("suppressions/add/", suppressions.suppression_add, name="suppression_add"),
    path(
        "suppressions/<int:suppression_id>/remove/",
        suppressions.suppression_remove,
        name="suppression_remove",
    ),
    path("exports/", exports.export_list, name="export_list"),
    path("exports/new/", exports.export_create, name="export_create"),
    path("exports/<int:export_id>/download/", exports.export_download, name="export_download"),
]
