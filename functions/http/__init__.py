"""functions/http"""
