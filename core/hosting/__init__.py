"""Hosted-mode settings, checks on untrusted input, sign-in attempt limits."""
