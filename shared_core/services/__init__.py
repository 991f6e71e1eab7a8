"""shared_core/services"""
