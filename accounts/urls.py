from django.urls import path

from accounts.views import auth, files, workspaces

app_name = "accounts"

urlpatterns = [
    path("accounts/login/", auth.login_view, name="login"),
    path("accounts/login/verify/", auth.login_verify, name="login_verify"),
    path("accounts/logout/", auth.logout_view, name="logout"),
    path("accounts/signup/", auth.signup, name="signup"),
    path("accounts/security/", auth.two_factor_settings, name="two_factor"),
    path("accounts/password/", auth.password_change, name="password_change"),
    path("accounts/password/reset/", auth.password_reset, name="password_reset"),
    path("accounts/password/reset/sent/", auth.password_reset_done, name="password_reset_done"),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        auth.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/complete/",
        auth.password_reset_complete,
        name="password_reset_complete",
    ),
    path("accounts/workspaces/new/", workspaces.workspace_new, name="workspace_new"),
    path(
        "accounts/workspaces/<slug:workspace_slug>/leave/",
        workspaces.workspace_leave,
        name="workspace_leave",
    ),
    path("invite/<str:token>/", workspaces.invitation_accept, name="invitation_accept"),
    path("files/<str:token>/", files.signed_download, name="signed_download"),
    path("w/<slug:workspace_slug>/", workspaces.dashboard, name="dashboard"),
    path(
        "w/<slug:workspace_slug>/settings/",
        workspaces.workspace_settings,
        name="workspace_settings",
    ),
    path("w/<slug:workspace_slug>/settings/members/", workspaces.members, name="members"),
    path(
        "w/<slug:workspace_slug>/settings/members/invite/",
        workspaces.member_invite,
        name="member_invite",
    ),
    path(
        "w/<slug:workspace_slug>/settings/members/<int:membership_id>/role/",
        workspaces.member_role,
        name="member_role",
    ),
    path(
        "w/<slug:workspace_slug>/settings/members/<int:membership_id>/remove/",
        workspaces.member_remove,
        name="member_remove",
    ),
    path(
        "w/<slug:workspace_slug>/settings/invitations/<int:invitation_id>/revoke/",
        workspaces.invitation_revoke,
        name="invitation_revoke",
    ),
]
