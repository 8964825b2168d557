"""URLs under /w/<workspace_slug>/contacts/, one module per area."""

from contacts.urls import imports, pages, segments, signup

app_name = "contacts"

urlpatterns = [*pages.urlpatterns, *imports.urlpatterns, *segments.urlpatterns, *signup.urlpatterns]
