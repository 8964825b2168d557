from django.urls import path

from campaigns.views import ab, audience, campaigns, editor, images, review, templates

app_name = "campaigns"

urlpatterns = [
    # The list and its actions (views/campaigns.py).
    path("", campaigns.campaign_list, name="campaign_list"),
    path("new/", campaigns.campaign_create, name="campaign_create"),
    path("<int:campaign_id>/duplicate/", campaigns.campaign_duplicate, name="campaign_duplicate"),
    path("<int:campaign_id>/archive/", campaigns.campaign_archive, name="campaign_archive"),
    # One campaign's tabs: content, audience, A/B test, review and send.
    path("<int:campaign_id>/", editor.campaign_edit, name="campaign_edit"),
    path("<int:campaign_id>/preview/", editor.campaign_preview, name="campaign_preview"),
    path("<int:campaign_id>/audience/", audience.campaign_audience, name="campaign_audience"),
    path("<int:campaign_id>/ab/", ab.campaign_ab, name="campaign_ab"),
    path("<int:campaign_id>/review/", review.campaign_review, name="campaign_review"),
    path("<int:campaign_id>/test-send/", review.campaign_test_send, name="campaign_test_send"),
    path("<int:campaign_id>/schedule/", review.campaign_schedule, name="campaign_schedule"),
    path("<int:campaign_id>/unschedule/", review.campaign_unschedule, name="campaign_unschedule"),
    path("<int:campaign_id>/cancel/", review.campaign_cancel, name="campaign_cancel"),
    # The template library (views/templates.py).
    path("templates/", templates.template_list, name="template_list"),
    path("templates/new/", templates.template_create, name="template_create"),
    path("templates/<int:template_id>/", templates.template_edit, name="template_edit"),
    path(
        "templates/<int:template_id>/duplicate/",
        templates.template_duplicate,
        name="template_duplicate",
    ),
    path(
        "templates/<int:template_id>/versions/<int:number>/restore/",
        templates.template_version_restore,
        name="template_version_restore",
    ),
    # The media library (views/images.py).
    path("images/", images.image_list, name="image_list"),
    path("images/<int:image_id>/", images.image_detail, name="image_detail"),
    path("images/<int:image_id>/delete/", images.image_delete, name="image_delete"),
]
