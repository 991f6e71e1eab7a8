"""Azure Functions blueprints (webhook, planning, approval, execution, schedules, ...).

They arrive with the Functions app; each one parses its input, calls `shared_core` and shapes the reply.
"""
