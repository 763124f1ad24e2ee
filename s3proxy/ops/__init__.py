"""Operator commands: break-glass decryption and rewrapping after key rotation."""
