"""shared_core/adapters/postgres"""
