"""Azure Functions blueprints, one module per concern: webhook, planning (orchestrator), approval,
execution, schedules and the read API. Each handler parses its input, calls `shared_core` and an
adapter, and shapes the reply; `function_app.py` registers them on one `df.DFApp`.
"""
