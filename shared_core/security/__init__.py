"""shared_core/security"""
