"""Webhook deliveries from the store, kept as they arrived: the admin shows them, the sweep retries failed ones."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class EventStatus(models.TextChoices):
    RECEIVED = "received", _("Received")
    PROCESSED = "processed", _("Processed")
    FAILED = "failed", _("Failed")
    IGNORED = "ignored", _("Ignored")


class WebhookStore(models.TextChoices):
    SHOPIFY = "shopify", "Shopify"
    WOOCOMMERCE = "woocommerce", "WooCommerce"


class WebhookEvent(models.Model):
    """One delivery that passed the signature check. The delivery id makes a re-sent delivery a no-op."""

    store = models.CharField(_("store"), max_length=12, choices=WebhookStore.choices)
    topic = models.CharField(_("topic"), max_length=64)
    delivery_id = models.CharField(
        _("delivery id"),
        max_length=200,
        help_text=_(
            "Shopify's webhook id (else its event id); WooCommerce's order id with its modified time (else its "
            "delivery id); else the body's SHA-256."
        ),
    )
    order_ref = models.CharField(_("store order id"), max_length=64, blank=True)
    body = models.TextField(_("body"))
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=EventStatus.choices, default=EventStatus.RECEIVED)
    error = models.TextField(_("error"), blank=True)
    result = models.CharField(_("result"), max_length=500, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-received_at", "-id"]
        permissions = [("retry_webhookevent", "Can retry webhook events")]
        constraints = [
            models.UniqueConstraint(fields=["store", "delivery_id"], name="webhook_event_delivery_unique"),
            models.CheckConstraint(condition=models.Q(status__in=EventStatus.values), name="webhook_event_status"),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="webhook_event_status_received"),
            models.Index(fields=["store", "order_ref"], name="webhook_event_order"),
        ]

    def __str__(self):
        return f"{self.get_store_display()} {self.topic} #{self.pk}"
