"""The user's own settings kept by ``ml``: which e-mail notifications they want."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from ml.models import NotificationPreference


class NotificationForm(forms.ModelForm):
    class Meta:
        model = NotificationPreference
        fields = ["review_emails"]
        labels = {"review_emails": "E-mail me when a case I filed is reviewed"}


@login_required
@require_http_methods(["GET", "POST"])
def notifications(request):
    preference, _ = NotificationPreference.objects.get_or_create(user=request.user)
    form = NotificationForm(request.POST if request.method == "POST" else None, instance=preference)
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data["review_emails"] and not request.user.email:
            form.add_error(
                "review_emails",
                "Your account has no e-mail address; ask your clinic admin to add one first.",
            )
        else:
            form.save()
            messages.success(request, "Your notification settings were saved.")
            return redirect("ml:notifications")
    return render(
        request, "ml/notifications.html", {"form": form}, status=400 if form.errors else 200
    )
