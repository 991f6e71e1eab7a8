"""shared_core/adapters/caches"""
