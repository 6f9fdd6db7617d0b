"""Template helpers of the back office's admin pages."""

from django import template

register = template.Library()


@register.filter
def changes_anything(adminform, inline_admin_formsets) -> bool:
    """Whether a change page has anything to save: an editable field, or an inline that adds or edits rows.

    A record whose fields are all read-only (a coupon, an order, a group action, a webhook event) gets no Save buttons.
    """
    if adminform is None or adminform.form.fields:
        return True
    for inline in inline_admin_formsets or ():
        if inline.has_add_permission or inline.formset.empty_form.visible_fields():
            return True
    return False


@register.filter
def intcomma_plain(value) -> str:
    """A whole number with thousands separators (1,234,567)."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)
