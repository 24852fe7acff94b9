"""One module per CRM (experience, crmtext): its client and its delivery protocol; what they share."""
