"""Workspaces: home, dashboard, settings, members and invitations."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services, two_factor
from accounts.dashboard import dashboard_panels, dashboard_steps
from accounts.errors import ApplicationError
from accounts.forms import (
    AcceptInvitationSignupForm,
    InviteForm,
    RoleForm,
    WorkspaceCreateForm,
    WorkspaceSettingsForm,
)
from accounts.models import Invitation, Role, User
from accounts.scoping import WorkspaceRequest, workspace_view
from accounts.tokens import invitation_token_read


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("accounts:login")
    workspace = selectors.user_default_workspace(user=request.user)
    if workspace is None:
        return redirect("accounts:workspace_new")
    return redirect("accounts:dashboard", workspace_slug=workspace.slug)


@login_required
@require_http_methods(["GET", "POST"])
def workspace_new(request: HttpRequest) -> HttpResponse:
    form = WorkspaceCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = services.workspace_create(name=form.cleaned_data["name"], owner=request.user)
        messages.success(request, f"{workspace.name} is created and waiting for review.")
        return redirect("accounts:dashboard", workspace_slug=workspace.slug)
    has_workspaces = selectors.user_memberships(user=request.user).exists()
    return render(
        request, "accounts/workspace_new.html", {"form": form, "has_workspaces": has_workspaces}
    )


@workspace_view()
@require_GET
def dashboard(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    member_count = selectors.membership_list(workspace=workspace).count()
    steps = dashboard_steps.for_workspace(workspace)
    return render(
        request,
        "accounts/dashboard.html",
        {
            "steps": steps,
            "steps_done": sum(step["done"] for step in steps),
            "member_count": member_count,
            "has_two_factor": two_factor.totp_has_device(user=request.user),
            "panels": dashboard_panels.url_names,
        },
    )


@workspace_view(write_role=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def workspace_settings(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    form = WorkspaceSettingsForm(request.POST or None, instance=workspace)
    if request.method == "POST" and form.is_valid():
        # The form validated a copy; the service applies and audits the change.
        workspace.refresh_from_db()
        services.workspace_update(
            workspace=workspace, acting_user=request.user, **form.cleaned_data
        )
        messages.success(request, "Workspace settings saved.")
        return redirect("accounts:workspace_settings", workspace_slug=workspace.slug)
    return render(
        request,
        "accounts/workspace_settings.html",
        {"form": form, "can_edit": request.membership.has_role(Role.ADMIN)},
    )


def _members_context(request: WorkspaceRequest, invite_form: InviteForm | None = None) -> dict:
    workspace = request.workspace
    # A change may have been to the acting member's own role.
    request.membership.refresh_from_db(fields=["role"])
    return {
        "memberships": selectors.membership_list(workspace=workspace),
        "invitations": selectors.invitation_list_open(workspace=workspace).select_related(
            "invited_by"
        ),
        "invite_form": invite_form or InviteForm(acting=request.membership),
        "role_choices": Role.choices,
        "can_invite": request.membership.has_role(Role.ADMIN),
        "is_owner": request.membership.role == Role.OWNER,
    }


@workspace_view()
@require_GET
def members(request: WorkspaceRequest) -> HttpResponse:
    return render(request, "accounts/members.html", _members_context(request))


@workspace_view(Role.ADMIN)
@require_POST
def member_invite(request: WorkspaceRequest) -> HttpResponse:
    form = InviteForm(request.POST, acting=request.membership)
    if form.is_valid():
        try:
            invitation = services.member_invite(
                workspace=request.workspace,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                acting_user=request.user,
            )
        except ApplicationError as error:
            form.add_error("email", error.message)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            form = None
    return _members_response(request, invite_form=form)


@workspace_view(Role.OWNER)
@require_POST
def member_role(request: WorkspaceRequest, membership_id: int) -> HttpResponse:
    membership = selectors.membership_get(workspace=request.workspace, membership_id=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
    else:
        try:
            services.member_change_role(
                membership=membership, role=form.cleaned_data["role"], acting_user=request.user
            )
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request, f"{membership.user.email} is now {Role(membership.role).label.lower()}."
            )
    return _members_response(request)


@workspace_view(Role.ADMIN)
@require_POST
def member_remove(request: WorkspaceRequest, membership_id: int) -> HttpResponse:
    membership = selectors.membership_get(workspace=request.workspace, membership_id=membership_id)
    try:
        services.member_remove(membership=membership, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        if membership.user_id == request.user.pk:
            messages.success(request, f"You have left {request.workspace.name}.")
            return redirect("home")
        messages.success(request, f"{membership.user.email} was removed.")
    return _members_response(request)


@workspace_view(Role.ADMIN)
@require_POST
def invitation_revoke(request: WorkspaceRequest, invitation_id: int) -> HttpResponse:
    invitation = selectors.invitation_get_open(
        workspace=request.workspace, invitation_id=invitation_id
    )
    services.invitation_revoke(invitation=invitation, acting_user=request.user)
    messages.success(request, f"Invitation to {invitation.email} revoked.")
    return _members_response(request)


def _members_response(
    request: WorkspaceRequest, invite_form: InviteForm | None = None
) -> HttpResponse:
    """htmx swaps the members panel in place; without htmx, back to the page."""
    if request.htmx:
        return render(
            request,
            "accounts/members.html#members-panel",
            _members_context(request, invite_form=invite_form),
        )
    if invite_form is not None and invite_form.errors:
        return render(
            request,
            "accounts/members.html",
            _members_context(request, invite_form=invite_form),
            status=400,
        )
    return redirect("accounts:members", workspace_slug=request.workspace.slug)


@login_required
@require_POST
def workspace_leave(request: HttpRequest, workspace_slug: str) -> HttpResponse:
    """Any member may leave, whatever their role (the last owner must hand over first).

    Outside /w/<slug>/ on purpose: workspace views refuse every POST from viewers.
    """
    membership = selectors.membership_for_slug(user=request.user, workspace_slug=workspace_slug)
    try:
        services.member_remove(membership=membership, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("accounts:members", workspace_slug=workspace_slug)
    messages.success(request, f"You have left {membership.workspace.name}.")
    return redirect("home")


def _invitation_from_token(token: str) -> Invitation:
    invitation_id = invitation_token_read(token)
    invitation = (
        Invitation.objects.select_related("workspace", "invited_by")
        .filter(pk=invitation_id, accepted_at__isnull=True)
        .first()
        if invitation_id is not None
        else None
    )
    if invitation is None:
        raise Http404("This invitation link is not valid, has expired or was already used.")
    return invitation


@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Accept as the signed-in user, or create an account for the invited address."""
    invitation = _invitation_from_token(token)
    context = {"invitation": invitation}
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                membership = services.invitation_accept(invitation=invitation, user=request.user)
            except ApplicationError as error:
                messages.error(request, error.message)
            else:
                messages.success(request, f"You joined {membership.workspace.name}.")
                return redirect("accounts:dashboard", workspace_slug=membership.workspace.slug)
        return render(request, "accounts/invitation_accept.html", context)

    if User.objects.filter(email__iexact=invitation.email).exists():
        return render(request, "accounts/invitation_accept.html", {**context, "must_sign_in": True})
    form = AcceptInvitationSignupForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.invitation_accept_as_new_user(
                invitation=invitation,
                full_name=form.cleaned_data["full_name"],
                password=form.cleaned_data["password"],
            )
        except ApplicationError as error:
            messages.error(request, error.message)
            return redirect("accounts:login")
        login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to {membership.workspace.name}.")
        return redirect("accounts:dashboard", workspace_slug=membership.workspace.slug)
    return render(request, "accounts/invitation_accept.html", {**context, "form": form})
