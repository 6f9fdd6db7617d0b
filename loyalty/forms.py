"""Forms of the back office. They only parse input; the rules live in the services."""

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Reward
from .rules import MAX_ACTION_POINTS, RELATIVE, SET_TO

YES, NO = "yes", "no"


class ActionForm(forms.Form):
    """A form of an admin action. `action_token` is drawn when the page is first shown and makes the idempotency
    keys of what the confirming POST posts, so a double submit (or back-and-resubmit) never posts twice."""

    action_token = forms.CharField(widget=forms.HiddenInput, max_length=64)


class AdjustPointsForm(ActionForm):
    apply_type = forms.ChoiceField(
        label=_("Apply type"),
        choices=[(RELATIVE, _("Add or subtract (relative)")), (SET_TO, _("Set available points to"))],
        initial=RELATIVE,
        widget=forms.RadioSelect,
    )
    points = forms.IntegerField(
        label=_("Points"),
        min_value=-MAX_ACTION_POINTS,
        max_value=MAX_ACTION_POINTS,
        help_text=_("Relative: a signed number, e.g. 500 or -200. Set to: the balance the member should end at."),
    )
    reason = forms.CharField(label=_("Reason"), max_length=500, help_text=_("Members and colleagues see it."))

    def clean(self):
        data = super().clean()
        points, apply_type = data.get("points"), data.get("apply_type")
        if points is None or apply_type is None:
            return data
        if apply_type == RELATIVE and points == 0:
            self.add_error("points", _("Points must not be 0."))
        if apply_type == SET_TO and points < 0:
            self.add_error("points", _("Set to needs a balance of 0 or more."))
        return data


class GiveRewardForm(ActionForm):
    reward = forms.ModelChoiceField(label=_("Reward"), queryset=Reward.objects.filter(active=True))
    deduct_points = forms.ChoiceField(
        label=_("Deduct points"),
        choices=[(YES, _("Yes: the member pays the reward's points")), (NO, _("No: give it for free"))],
        initial=YES,
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(label=_("Reason"), max_length=500, required=False)


class EntryReasonForm(ActionForm):
    reason = forms.CharField(label=_("Reason"), max_length=500)


class ApproveForm(ActionForm):
    reason = forms.CharField(label=_("Reason"), max_length=500, required=False)


class AddConversionForm(ActionForm):
    """Credit a conversion by hand: by reward token (credited once per token), or by email with a number of points."""

    token = forms.CharField(label=_("Reward token"), max_length=64, required=False)
    email = forms.EmailField(label=_("Member's email"), required=False)
    points = forms.IntegerField(
        label=_("Points"),
        min_value=1,
        max_value=10_000_000,
        required=False,
        help_text=_("By email only; empty: the conversion rule's points. A token always earns its rule's points."),
    )
    reason = forms.CharField(label=_("Reason"), max_length=500)

    def clean(self):
        data = super().clean()
        token, email = (data.get("token") or "").strip(), (data.get("email") or "").strip().lower()
        if not token and not email:
            raise forms.ValidationError(_("Give a reward token or a member's email."))
        if token and email:
            raise forms.ValidationError(_("Give a reward token or an email, not both."))
        if token and data.get("points"):
            self.add_error("points", _("A token earns its conversion rule's points; leave this empty."))
        data["token"], data["email"] = token, email
        return data
