"""Abuse cases: hostile senders, hostile CRM answers, weak settings, header edge cases."""
