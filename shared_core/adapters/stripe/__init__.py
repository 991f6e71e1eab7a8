"""Stripe: Billing Meter events (`meters.py`) and verified webhook events (`events.py`); both import `stripe`."""
