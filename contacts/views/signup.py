"""Signup forms: the public hosted page, its POST target and the confirmation page; and the
marketer's pages to create, edit, embed and delete forms."""

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts import signup as selectors
from contacts.models import ContactList, SignupForm
from contacts.services import signup as services
from contacts.tokens import ConfirmationExpired, confirmation_token_read

# --- Public pages: no session, no workspace in the URL; the public id or a signed token.


def _client(request: HttpRequest) -> dict:
    return {
        "ip": getattr(request, "client_ip", None),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:500],
    }


def _message(
    request: HttpRequest, *, title: str, text: str, status: int = 200, workspace=None
) -> HttpResponse:
    return render(
        request,
        "contacts/signup/message.html",
        {"title": title, "text": text, "brand_workspace": workspace},
        status=status,
    )


def _form_gone(request: HttpRequest) -> HttpResponse:
    return _message(
        request,
        title="This form is not available",
        text="It may have been closed or removed by its owner.",
        status=404,
    )


# The embed snippet is a plain HTML form on a customer's site, so this POST arrives from
# other origins without our CSRF cookie or token: CSRF protection is off for this one view.
# What CSRF would prevent (a forged request acting for a signed-in user) does not apply:
# the view acts for nobody's session. Abuse is held back by the honeypot, the per-IP limit,
# the one-mail-per-address-per-day limit, and double opt-in: nothing is subscribed on a
# double opt-in list until the address's owner confirms from the mail.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def signup_page(request: HttpRequest, public_id: str) -> HttpResponse:
    form = selectors.signup_form_public_get(public_id=public_id)
    if form is None:
        return _form_gone(request)
    values, errors, status = {}, {}, 200
    if request.method == "POST":
        values = {
            "email": request.POST.get("email", "")[:400],
            "first_name": request.POST.get("first_name", "")[:150] if form.ask_name else "",
            "last_name": request.POST.get("last_name", "")[:150] if form.ask_name else "",
        }
        consent_given = bool(request.POST.get("consent"))
        try:
            services.signup_submit(
                form=form,
                consent_given=consent_given,
                honeypot=request.POST.get(selectors.HONEYPOT_FIELD, ""),
                **values,
                **_client(request),
            )
        except services.SignupThrottled as error:
            return _message(
                request,
                title="Please wait a little",
                text=error.message,
                status=429,
                workspace=form.workspace,
            )
        except ApplicationError as error:
            errors[error.extra.get("field", "email")] = error.message
            values["consent"] = consent_given
            status = 400
        else:
            return redirect("signup:signup_thanks", public_id=form.public_id)
    return render(
        request,
        "contacts/signup/page.html",
        {
            "form": form,
            "values": values,
            "errors": errors,
            "brand_workspace": form.workspace,
            "honeypot_field": selectors.HONEYPOT_FIELD,
        },
        status=status,
    )


@require_GET
def signup_thanks(request: HttpRequest, public_id: str) -> HttpResponse:
    form = selectors.signup_form_public_get(public_id=public_id)
    if form is None:
        return _form_gone(request)
    return _message(request, title=form.title, text=form.success_message, workspace=form.workspace)


@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button, POST confirms: mail scanners fetch links, they do not press buttons."""
    try:
        claim = confirmation_token_read(token)
    except ConfirmationExpired:
        return _message(
            request,
            title="This link has expired",
            text="Confirmation links work for a limited time. Sign up again to get a new one.",
            status=410,
        )
    if claim is None:
        return _invalid_link(request)
    subscription = selectors.signup_confirmation_subscription(claim=claim)
    if subscription is None:
        return _invalid_link(request)
    workspace = subscription.workspace
    if request.method == "POST":
        try:
            services.signup_confirm(claim=claim, **_client(request))
        except ApplicationError as error:
            return _message(
                request,
                title="This subscription cannot be confirmed",
                text=error.message,
                status=409,
                workspace=workspace,
            )
        return _confirmed(request, subscription)
    if subscription.status == subscription.Status.SUBSCRIBED:
        return _confirmed(request, subscription)
    return render(
        request,
        "contacts/signup/confirm.html",
        {"subscription": subscription, "brand_workspace": workspace},
    )


def _confirmed(request: HttpRequest, subscription) -> HttpResponse:
    return _message(
        request,
        title="You are subscribed",
        text=f"Thank you! {subscription.contact.email} now receives "
        f"{subscription.contact_list.name} from {subscription.workspace.name}.",
        workspace=subscription.workspace,
    )


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return _message(
        request,
        title="This link is not valid",
        text="Copy the whole link from the confirmation mail, or sign up again.",
        status=404,
    )


# --- Marketer pages under /w/<slug>/contacts/forms/


class SignupFormEditForm(forms.ModelForm):
    class Meta:
        model = SignupForm
        fields = services.FORM_FIELDS
        labels = {
            "name": "Name (only your team sees it)",
            "contact_list": "Subscribe people to",
            "title": "Heading",
            "intro": "Introduction",
            "consent_text": "Consent text (next to the required tick box)",
            "ask_name": "Ask for first and last name",
            "is_enabled": "Accept signups",
        }
        widgets = {
            "intro": forms.Textarea(attrs={"rows": 3}),
            "consent_text": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["contact_list"].queryset = ContactList.objects.for_workspace(workspace)
        self.fields["contact_list"].empty_label = None
        self.fields["contact_list"].help_text = (
            "Double opt-in lists send a confirmation mail first; single opt-in lists "
            "subscribe at once."
        )


def _form_of(request: WorkspaceRequest, form_id: int) -> SignupForm:
    return get_object_or_404(selectors.signup_form_list(workspace=request.workspace), pk=form_id)


@workspace_view()
@require_GET
def form_list(request: WorkspaceRequest) -> HttpResponse:
    signup_forms = list(selectors.signup_form_list(workspace=request.workspace))
    counts = selectors.signup_form_counts(workspace=request.workspace, forms=signup_forms)
    rows = [{"form": form, **counts[form.pk]} for form in signup_forms]
    return render(
        request,
        "contacts/signup/form_list.html",
        {"rows": rows, "can_edit": request.membership.has_role(Role.EDITOR)},
    )


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def form_new(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    edit_form = SignupFormEditForm(request.POST or None, workspace=workspace)
    if request.method == "POST" and edit_form.is_valid():
        try:
            form = services.signup_form_create(
                workspace=workspace, acting_user=request.user, **edit_form.cleaned_data
            )
        except ApplicationError as error:
            edit_form.add_error(None, error.message)
        else:
            messages.success(request, f"{form.name} is ready. Share its page or embed it.")
            return redirect("contacts:form_detail", workspace_slug=workspace.slug, form_id=form.pk)
    has_lists = ContactList.objects.for_workspace(workspace).exists()
    return render(
        request,
        "contacts/signup/form_edit.html",
        {"edit_form": edit_form, "signup_form": None, "has_lists": has_lists},
    )


@workspace_view()
@require_GET
def form_detail(request: WorkspaceRequest, form_id: int) -> HttpResponse:
    form = _form_of(request, form_id)
    url = selectors.signup_form_url(form=form)
    snippet = render_to_string(
        "contacts/signup/_embed_snippet.html",
        {"form": form, "action": url, "honeypot_field": selectors.HONEYPOT_FIELD},
    ).strip()
    counts = selectors.signup_form_counts(workspace=request.workspace, forms=[form])[form.pk]
    return render(
        request,
        "contacts/signup/form_detail.html",
        {
            "signup_form": form,
            "hosted_url": url,
            "snippet": snippet,
            "counts": counts,
            "can_edit": request.membership.has_role(Role.EDITOR),
        },
    )


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def form_edit(request: WorkspaceRequest, form_id: int) -> HttpResponse:
    form = _form_of(request, form_id)
    edit_form = SignupFormEditForm(request.POST or None, instance=form, workspace=form.workspace)
    if request.method == "POST" and edit_form.is_valid():
        form.refresh_from_db()  # the ModelForm changed the instance; the service applies
        try:
            services.signup_form_update(
                form=form, acting_user=request.user, **edit_form.cleaned_data
            )
        except ApplicationError as error:
            edit_form.add_error(None, error.message)
        else:
            messages.success(request, "Form saved.")
            return redirect(
                "contacts:form_detail", workspace_slug=request.workspace.slug, form_id=form.pk
            )
    return render(
        request,
        "contacts/signup/form_edit.html",
        {"edit_form": edit_form, "signup_form": form, "has_lists": True},
    )


@workspace_view(Role.EDITOR)
@require_POST
def form_delete(request: WorkspaceRequest, form_id: int) -> HttpResponse:
    form = _form_of(request, form_id)
    services.signup_form_delete(form=form, acting_user=request.user)
    messages.success(request, f"{form.name} is deleted; pages and snippets of it stop working.")
    target = redirect("contacts:form_list", workspace_slug=request.workspace.slug)
    if request.htmx:
        return HttpResponseClientRedirect(target.url)
    return target
