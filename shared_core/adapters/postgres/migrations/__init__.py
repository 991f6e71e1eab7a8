"""Versioned SQL migrations of the state store, applied in order by `ironlayer migrate`."""
