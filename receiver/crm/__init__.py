"""One client per CRM (experience, crmtext) and the errors they raise (errors)."""
