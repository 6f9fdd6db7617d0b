"""Forms of the back office. They only parse input; the rules live in the services."""

import json

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import CHANGE_KIND_CHOICES, ProgramSettings, Reward
from .rules import CORRECTION, MAX_ACTION_POINTS, RELATIVE, SET_TO

YES, NO = "yes", "no"


class LifetimeChoiceMixin(forms.Form):
    """Asks what kind of change an adjustment is and whether it counts toward lifetime (and so the VIP tier).

    The answer starts at the program's default for the kind (ProgramSettings.lifetime_counts_*) and follows the kind
    as it is changed (lifetime_choice.js); an answer left out takes the default (loyalty.rules.adjustment_counts)."""

    change_kind = forms.ChoiceField(
        label=_("Kind of change"), choices=CHANGE_KIND_CHOICES, initial=CORRECTION, required=False
    )
    counts_toward_lifetime = forms.ChoiceField(
        label=_("Counts toward lifetime (VIP tier)?"),
        choices=[(YES, _("Yes: lifetime points and the tier follow it")), (NO, _("No: the tier stays as it is"))],
        required=False,
        widget=forms.RadioSelect,
        help_text=_(
            "A correction usually counts; a goodwill credit or a write-off usually does not, so nobody loses "
            "(or gets) a tier for it. The defaults are program settings."
        ),
    )

    class Media:
        js = ["loyalty/lifetime_choice.js"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = ProgramSettings.load().lifetime_defaults()
        kind = self.initial.get("change_kind", CORRECTION)
        self.initial.setdefault("counts_toward_lifetime", YES if defaults.get(kind, True) else NO)
        self.fields["change_kind"].widget.attrs["data-lifetime-defaults"] = json.dumps(
            {k: YES if v else NO for k, v in defaults.items()}
        )

    def clean_change_kind(self):
        return self.cleaned_data.get("change_kind") or CORRECTION  # a form sent without it: a correction

    def lifetime_answer(self) -> bool | None:
        """The staff member's answer (None: the program's default for the kind of change)."""
        answer = self.cleaned_data.get("counts_toward_lifetime")
        return {YES: True, NO: False}.get(answer)


class ActionForm(forms.Form):
    """A form of an admin action. `action_token` is drawn when the page is first shown and makes the idempotency
    keys of what the confirming POST posts, so a double submit (or back-and-resubmit) never posts twice."""

    action_token = forms.CharField(widget=forms.HiddenInput, max_length=64)


class AdjustPointsForm(LifetimeChoiceMixin, ActionForm):
    field_order = ["apply_type", "points", "reason", "change_kind", "counts_toward_lifetime"]

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
