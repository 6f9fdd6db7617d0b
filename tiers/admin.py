from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from loyalty.admin.action_pages import titled

from .models import Tier, TierChange
from .services import table_with, tier_change_impact, tier_retire, tiers_recompute_queue

CONFIRMED = "_tier_impact_seen"


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    """Tiers: a save or a delete first shows how many members move up and down, then moves them in the background.

    A deleted tier is retired (kept for the tier history, read-only); its members move to the tier they reach.
    """

    list_display = ["name", "threshold", "state"]
    ordering = ["retired", "threshold"]
    delete_confirmation_template = "admin/tiers/tier/delete_confirmation.html"

    @admin.display(description=gettext_lazy("state"))
    def state(self, obj):
        return _("retired") if obj.retired else _("in use")

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and not (obj and obj.retired)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and not (obj and obj.retired)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        confirmed = request.POST.get(CONFIRMED) == "yes"
        if request.method == "POST" and not confirmed and (preview := self._impact_page(request, object_id)):
            return preview
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _impact_page(self, request, object_id):
        """The confirming page of a valid save: the members it moves up and down (None: let the form answer)."""
        obj = self.get_object(request, object_id) if object_id else None
        if object_id and (obj is None or not self.has_change_permission(request, obj)):
            return None
        if not object_id and not self.has_add_permission(request):
            return None
        before = obj.threshold if obj else None
        form = self.get_form(request, obj, change=obj is not None)(request.POST, instance=obj)
        if not form.is_valid():
            return None
        threshold = form.cleaned_data["threshold"]
        up, down = tier_change_impact(table_with(tier=form.instance, threshold=threshold))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": _("Save tier %(name)s?") % {"name": form.cleaned_data["name"]},
            "summary": _impact_sentence(form.cleaned_data["name"], before, threshold, up, down),
            "fields": [(k, v) for k, values in request.POST.lists() for v in values if k != "csrfmiddlewaretoken"],
            "confirmed_name": CONFIRMED,
        }
        return TemplateResponse(request, "admin/tiers/tier/confirm_save.html", context)

    def save_model(self, request, obj, form, change):
        before = Tier.objects.filter(pk=obj.pk).values_list("threshold", flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        if before is None:
            reason = _("Tier %(name)s added at %(points)s points") % {"name": obj.name, "points": f"{obj.threshold:,}"}
        else:
            reason = _("Tier %(name)s changed from %(before)s to %(after)s points") % {
                "name": obj.name,
                "before": f"{before:,}",
                "after": f"{obj.threshold:,}",
            }
        tiers_recompute_queue(reason=reason)

    def get_deleted_objects(self, objs, request):
        # Nothing is deleted: a tier is retired, its members move, its history stays (no "protected objects" page).
        names = [str(obj) for obj in objs]
        perms_needed = set() if self.has_delete_permission(request) else {self.model._meta.verbose_name}
        return names, {self.model._meta.verbose_name_plural: len(names)}, perms_needed, []

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if obj is not None and not obj.retired:
            up, down = tier_change_impact(table_with(tier=obj, retire=True))
            extra["tier_impact"] = _impact_sentence(obj.name, obj.threshold, None, up, down)
        return super().delete_view(request, object_id, extra)

    def delete_model(self, request, obj):
        tier_retire(tier=obj, reason=_("Tier %(name)s retired") % {"name": obj.name})

    def delete_queryset(self, request, queryset):
        for obj in queryset.filter(retired=False):
            self.delete_model(request, obj)


def _impact_sentence(name, before, after, up, down) -> str:
    if after is None:
        what = _("Retiring %(name)s") % {"name": name}
    elif before is None:
        what = _("Adding %(name)s at %(after)s points") % {"name": name, "after": f"{after:,}"}
    else:
        what = _("Moving %(name)s from %(before)s to %(after)s points") % {
            "name": name,
            "before": f"{before:,}",
            "after": f"{after:,}",
        }
    members = ngettext("%(n)s member", "%(n)s members", up) % {"n": f"{up:,}"}
    return _(
        "%(what)s moves %(members)s up and %(down)s down. They move in the background once you confirm; "
        "each move is kept in the tier history with this reason."
    ) % {"what": what, "members": members, "down": f"{down:,}"}


@admin.register(TierChange)
class TierChangeAdmin(admin.ModelAdmin):
    """Tier history is written with the ledger, in the same transaction: read-only here."""

    list_display = ["created_at", "member", "from_tier", "to_tier", "lifetime_points", "reason"]
    list_select_related = ["member", "from_tier", "to_tier"]
    list_filter = [("to_tier", titled(admin.RelatedFieldListFilter, gettext_lazy("new tier")))]
    search_fields = ["=member__email"]
    raw_id_fields = ["member", "entry"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
