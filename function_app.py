"""IronLayer's Azure Functions app (Python v2 model): one Durable app, one blueprint per concern.

Loading it checks the settings first and fails closed (`shared_core.settings.check_app_settings`): an app
that would run without authentication or keep its state on the worker's disk outside an explicit
development or test environment does not start, and the host logs the one-line reason.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df

from functions.admin import bp as admin_bp
from functions.api import bp as api_bp
from functions.approval import bp as approval_bp
from functions.billing import bp as billing_bp
from functions.execution import bp as execution_bp
from functions.planning import bp as planning_bp
from functions.schedules import bp as schedules_bp
from functions.telemetry import bp as telemetry_bp
from functions.webhook import bp as webhook_bp
from shared_core.settings import check_app_settings, get_settings


def _scrub_every_log_record() -> None:
    """Scrub secrets and PII from every log record, whichever logger or handler it goes through."""
    from shared_core.security.scrub import ScrubFilter

    scrubber = ScrubFilter()
    make = logging.getLogRecordFactory()
    if getattr(make, "ironlayer_scrubs", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        scrubber.filter(record)
        return record

    factory.ironlayer_scrubs = True  # type: ignore[attr-defined]  # marks the factory as installed
    logging.setLogRecordFactory(factory)


_scrub_every_log_record()
check_app_settings(get_settings())
app = df.DFApp()
for blueprint in (webhook_bp, planning_bp, approval_bp, execution_bp, schedules_bp, api_bp, admin_bp, telemetry_bp,
                  billing_bp):
    app.register_functions(blueprint)
