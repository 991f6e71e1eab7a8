"""shared_core/core"""
