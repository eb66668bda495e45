"""Webhook deliveries: event bodies, Standard Webhooks signatures, the retrying sender."""
