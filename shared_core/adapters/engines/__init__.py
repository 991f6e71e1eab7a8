"""shared_core/adapters/engines"""
