from django.urls import path

from contacts.views import segments

urlpatterns = [
    path("segments/", segments.segment_list, name="segment_list"),
    path("segments/new/", segments.segment_new, name="segment_new"),
    path("segments/builder/", segments.segment_builder, name="segment_builder"),
    path("segments/preview/", segments.segment_preview, name="segment_preview"),
    path("segments/<int:segment_id>/", segments.segment_detail, name="segment_detail"),
    path("segments/<int:segment_id>/edit/", segments.segment_edit, name="segment_edit"),
    path("segments/<int:segment_id>/count/", segments.segment_count, name="segment_count"),
    path("segments/<int:segment_id>/delete/", segments.segment_delete, name="segment_delete"),
]
