"""shared_core/core/project"""
