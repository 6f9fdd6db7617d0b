"""Forms of the imports admin: they only parse input; the import service decides."""

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from loyalty.forms import LifetimeChoiceMixin

from .models import ImportKind

ACCEPTED = (".csv", ".txt", ".xlsx")


class ImportUploadForm(LifetimeChoiceMixin, forms.Form):
    """The upload. For a points file it also asks what kind of change the file is and whether its points count
    toward lifetime (and so the VIP tier)."""

    field_order = ["kind", "file", "reason", "change_kind", "counts_toward_lifetime"]

    kind = forms.ChoiceField(label=_("Kind of file"), choices=ImportKind.choices)
    file = forms.FileField(
        label=_("File"),
        help_text=_("CSV (UTF-8, comma or semicolon) or Excel .xlsx; the first row names the columns."),
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=500,
        required=False,
        help_text=_("Shown on every entry the import makes, unless a row gives its own reason."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith(ACCEPTED):
            raise forms.ValidationError(_("Upload a .csv or .xlsx file."))
        limit = settings.IMPORT_MAX_UPLOAD_MB
        if upload.size > limit * 1024 * 1024:
            raise forms.ValidationError(
                _("The file is %(size).1f MB; the largest file accepted is %(max)s MB. Split it into smaller files.")
                % {"size": upload.size / 1024 / 1024, "max": limit}
            )
        return upload


class UndoForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=400, required=False)
