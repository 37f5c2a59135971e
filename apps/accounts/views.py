from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from .services import api_token_create, api_token_revoke


@never_cache  # Cache-Control: no-store — a new token's value is on this page
@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    """Your API tokens. A new token's value is shown on this page once, right after creation."""
    new_token = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:100]
        if not name:
            messages.error(request, "Give the token a name, e.g. the script that will use it.")
        else:
            _token, new_token = api_token_create(user=request.user, name=name)
    tokens = request.user.api_tokens.all()
    return render(request, "accounts/tokens.html", {"tokens": tokens, "new_token": new_token})


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(request.user.api_tokens, pk=pk, revoked_at__isnull=True)
    api_token_revoke(token=token, actor=request.user)
    messages.success(request, f"Token {token} revoked.")
    return redirect("tokens")
