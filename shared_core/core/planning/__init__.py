"""shared_core/core/planning"""
