"""shared_core/core/sql"""
