"""Who may do what: operators' roles, tenant scopes and their secrets (passwords, API tokens)."""
