"""shared_core/adapters/github"""
