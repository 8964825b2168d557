from django.urls import path

from contacts.views import imports

urlpatterns = [
    path("imports/", imports.import_list, name="import_list"),
    path("imports/new/", imports.import_upload, name="import_upload"),
    path("imports/<int:import_id>/", imports.import_detail, name="import_detail"),
    path("imports/<int:import_id>/resume/", imports.import_resume, name="import_resume"),
    path("imports/<int:import_id>/progress/", imports.import_progress, name="import_progress"),
    path("imports/<int:import_id>/rejected.csv", imports.import_report, name="import_report"),
]
