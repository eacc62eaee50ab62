"""autumn_stripe: the Stripe payment gateway for autumn_core (see README.md in this folder)."""

from autumn_stripe.gateway import StripeGateway
from autumn_stripe.plumbing import minor_units
from autumn_stripe.webhooks import signature_header

__all__ = ["StripeGateway", "minor_units", "signature_header"]
